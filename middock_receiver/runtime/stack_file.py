"""The Swarm stack file of a release, generated from its pinned, resolved compose configuration.

`docker stack deploy` reads variables from its own environment only and its own subset of the
compose format, so middock never hands it the user's file: it writes one from what Compose
resolved (variables and `env_file` already inlined), with every image pinned by its registry
digest. Pure functions, so the plan is read and tested without a cluster:

- what Swarm cannot run is refused before anything starts, with one line naming the service and
  the key (`container_name`, `network_mode`, `privileged`, `devices`, `security_opt`, a
  `depends_on` condition, a `build:` with no image, a fixed host port two releases would share);
- the web service publishes its port in host mode with no fixed number, so each task gets a
  port of its own that the edge reads from the task (no routing mesh, which needs IPVS);
- services resolve each other by DNS round robin (`endpoint_mode: dnsrr`), again without IPVS;
- named volumes keep the app-wide name, so every release mounts the same volume on a node.
"""

from __future__ import annotations

import copy

from ..errors import MiddockError
from . import overrides
from .side_by_side import Web

REFUSED = ("container_name", "network_mode", "privileged", "devices", "security_opt")
DROPPED = ("build", "expose", "depends_on", "restart", "scale", "container_name", "pull_policy")
RESTART = {"no": "none", "always": "any", "unless-stopped": "any", "on-failure": "on-failure"}


def check(resolved: dict, web: Web | None, stopping_first: list[str]) -> None:
    """Refuse, with one line, what a Swarm stack cannot run (or two releases cannot share)."""
    for name, spec in resolved["services"].items():
        for key in REFUSED:
            if spec.get(key):
                raise MiddockError(f"service {name}: Swarm cannot run `{key}`; remove it to deploy to the Swarm")
        for needed, condition in (spec.get("depends_on") or {}).items():
            if (condition or {}).get("condition", "service_started") != "service_started":
                raise MiddockError(
                    f"service {name}: Swarm ignores depends_on conditions ({needed}: {condition['condition']}); "
                    "remove the condition and let the healthcheck and restarts order the start"
                )
        if not spec.get("image"):
            raise MiddockError(f"service {name}: no image to push to the registry; name the image a build script makes")
        if name in stopping_first or (web and name == web.service):
            continue
        ports = overrides.fixed_ports(spec)
        if ports:
            raise MiddockError(
                f"service {name} publishes host port {ports[0]}, which two releases cannot share during a switch: "
                f"remove it, or list {name} in MIDDOCK_STOP_FIRST"
            )


def restart_policy(spec: dict) -> dict:
    policy = str(spec.get("restart") or "unless-stopped").split(":")[0]
    return {"condition": RESTART.get(policy, "any"), "delay": "1s"}


def service(spec: dict, image: str, web: Web | None, name: str) -> dict:
    out = {key: value for key, value in spec.items() if key not in DROPPED and value is not None}
    out["image"] = image
    deploy = copy.deepcopy(spec.get("deploy") or {})
    for empty in ("resources", "placement"):  # Compose writes them empty; Swarm wants them absent
        if deploy.get(empty) == {}:
            deploy.pop(empty)
    deploy["replicas"] = overrides.replicas(spec)
    deploy["endpoint_mode"] = "dnsrr"
    deploy["restart_policy"] = restart_policy(spec)
    out["deploy"] = deploy
    if web and name == web.service:
        out["ports"] = [{"target": web.port, "mode": "host", "protocol": "tcp"}]
    elif spec.get("ports"):
        out["ports"] = [{**port, "mode": "host"} for port in spec["ports"]]
    if isinstance(out.get("networks"), dict):
        out["networks"] = list(out["networks"])
    return out


def stack_file(resolved: dict, app: str, images: dict[str, str], web: Web | None) -> dict:
    """The stack a release runs: `images` maps each service to its `REGISTRY/REPO@sha256:…`."""
    stack = {"version": "3.8", "services": {}}
    for name, spec in resolved["services"].items():
        stack["services"][name] = service(spec, images[name], web, name)
    networks = {}
    for key, network in (resolved.get("networks") or {}).items():
        if network.get("external") or network.get("name") not in (None, f"{app}_{key}"):
            networks[key] = {"name": network["name"], "external": True}
        else:
            networks[key] = {"driver": "overlay", "attachable": True}
    if networks:
        stack["networks"] = networks
    volumes = {}
    for key, volume in (resolved.get("volumes") or {}).items():
        if volume.get("external"):
            volumes[key] = {"name": volume["name"], "external": True}
        else:
            volumes[key] = {"name": volume.get("name") or f"{app}_{key}"}
    if volumes:
        stack["volumes"] = volumes
    return stack
