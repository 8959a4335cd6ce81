"""The Swarm's plan as plain data, without a cluster: the stack file of a release, and what it
refuses, from a resolved compose configuration."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from middock_receiver.errors import MiddockError
from middock_receiver.runtime import registry, stack_file, swarm
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


def test_the_join_script_carries_its_data_encoded_and_lets_only_the_manager_reach_the_tasks():
    ca = "-----BEGIN CERTIFICATE-----\nQUJD\n-----END CERTIFICATE-----\n"
    join = ["docker", "swarm", "join", "--token", "SWMTKN-1-x", "10.0.0.2:2377"]
    script = swarm.join_script("10.0.0.2:5000", ca, "pa'ss$(id)", "10.0.0.2", join)
    assert "<<" not in script  # no heredoc for a line of data to end
    encoded = base64.b64encode(ca.encode()).decode()
    assert f"echo {encoded} | base64 -d > /etc/docker/certs.d/10.0.0.2:5000/ca.crt" in script
    assert "printf '%s\\n' 'pa'\"'\"'ss$(id)' | docker login --username pull --password-stdin 10.0.0.2:5000" in script
    rule = "DOCKER-USER -o docker_gwbridge -m conntrack --ctstate NEW '!' -s 10.0.0.2 -j DROP"
    assert f"iptables -I {rule}" in script and script.endswith("docker swarm join --token SWMTKN-1-x 10.0.0.2:2377\n")
    unit = swarm.task_ports_unit("10.0.0.2")
    assert "After=docker.service" in unit and "ExecStart=/usr/sbin/iptables -I DOCKER-USER" in unit
    with pytest.raises(ValueError):
        swarm.task_ports_rule("10.0.0.2 -j ACCEPT")
    with pytest.raises(MiddockError, match="not a PEM certificate"):
        registry.check_ca_pem(ca + "CERTIFICATE\nid > /tmp/pwned\n")


def test_the_registrys_two_sides_and_their_passwords():
    files = registry.Files(Path("/srv/deploy/.middock/_swarm/registry"))
    pull = registry.render_config(files, "10.0.0.2:5000", registry.PULL_USER)
    assert "addr: 10.0.0.2:5000" in pull and "readonly:\n      enabled: true" in pull and "tls:" in pull
    assert f"path: {files.htpasswd('pull')}" in pull and "delete" not in pull
    push = registry.render_config(files, "10.0.0.2:5000", registry.PUSH_USER)
    assert f"addr: {registry.PUSH_ADDRESS}" in push and "delete:\n    enabled: true" in push and "tls:" not in push
    assert registry.bcrypt("secret").startswith("$2b$04$")  # the least work: checked at every request
