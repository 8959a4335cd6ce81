"""The Swarm's plan as plain data, without a cluster: the stack file of a release, and what it
refuses, from a resolved compose configuration."""

from __future__ import annotations

import pytest

from middock_receiver.errors import MiddockError
from middock_receiver.runtime import stack_file
from middock_receiver.runtime.side_by_side import Web

RESOLVED = {
    "name": "shop",
    "services": {
        "web": {
            "image": "sha256:aaa",
            "command": None,
            "environment": {"PRICE": "5$$", "MODE": "live"},
            "ports": [{"mode": "ingress", "target": 8000, "published": "8080", "protocol": "tcp"}],
            "networks": {"default": None},
            "volumes": [{"type": "volume", "source": "media", "target": "/media"}],
            "healthcheck": {"test": ["CMD", "true"], "interval": "2s"},
            "depends_on": {"worker": {"condition": "service_started", "required": True}},
            "restart": "unless-stopped",
            "scale": 3,
            "deploy": {"resources": {}, "placement": {}},
        },
        "worker": {"image": "sha256:bbb", "restart": "on-failure", "expose": ["9000"], "networks": {"default": None}},
    },
    "volumes": {"media": {"name": "shop_media"}},
    "networks": {"default": {"name": "shop_default"}},
}
IMAGES = {"web": "10.0.0.1:5000/shop/web@sha256:111", "worker": "10.0.0.1:5000/shop/worker@sha256:222"}


def test_the_stack_file_pins_digests_publishes_the_web_port_per_task_and_keeps_volumes():
    stack = stack_file.stack_file(RESOLVED, "shop", IMAGES, Web("web", 8000))
    web, worker = stack["services"]["web"], stack["services"]["worker"]
    assert stack["version"] == "3.8"
    assert web["image"] == IMAGES["web"] and worker["image"] == IMAGES["worker"]
    assert web["ports"] == [{"target": 8000, "mode": "host", "protocol": "tcp"}]  # no fixed host port
    assert web["deploy"] == {
        "replicas": 3,
        "endpoint_mode": "dnsrr",
        "restart_policy": {"condition": "any", "delay": "1s"},
    }
    assert worker["deploy"]["restart_policy"]["condition"] == "on-failure"
    assert web["environment"] == {"PRICE": "5$$", "MODE": "live"}  # still escaped for `docker stack deploy`
    assert web["healthcheck"] == RESOLVED["services"]["web"]["healthcheck"]
    assert web["networks"] == ["default"]
    for key in ("depends_on", "restart", "scale", "command"):
        assert key not in web
    assert "expose" not in worker
    assert stack["volumes"] == {"media": {"name": "shop_media"}}  # the same volume for every release on a node
    assert stack["networks"] == {"default": {"driver": "overlay", "attachable": True}}


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("container_name", "w", "service worker: Swarm cannot run `container_name`"),
        ("network_mode", "host", "service worker: Swarm cannot run `network_mode`"),
        ("privileged", True, "service worker: Swarm cannot run `privileged`"),
        ("devices", ["/dev/fuse"], "service worker: Swarm cannot run `devices`"),
        ("security_opt", ["no-new-privileges:true"], "service worker: Swarm cannot run `security_opt`"),
        ("depends_on", {"web": {"condition": "service_healthy"}}, "Swarm ignores depends_on conditions"),
        ("ports", [{"target": 9000, "published": "9000"}], "service worker publishes host port 9000"),
        ("image", None, "service worker: no image"),
    ],
)
def test_what_swarm_cannot_run_is_refused(key, value, message):
    worker = {**RESOLVED["services"]["worker"], key: value}
    resolved = {**RESOLVED, "services": {**RESOLVED["services"], "worker": worker}}
    with pytest.raises(MiddockError, match=message.replace("(", r"\(").replace(")", r"\)")):
        stack_file.check(resolved, Web("web", 8000), [])


def test_a_fixed_port_is_fine_on_a_service_that_stops_first():
    worker = {**RESOLVED["services"]["worker"], "ports": [{"target": 9000, "published": "9000"}]}
    stack_file.check({**RESOLVED, "services": {**RESOLVED["services"], "worker": worker}}, Web("web", 8000), ["worker"])
