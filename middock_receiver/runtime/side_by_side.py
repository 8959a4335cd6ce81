"""How a release's compose configuration changes so that it can run beside the live one.

Blue/green needs two releases of one app up at once, each under its own Compose project. Pure
functions of the resolved configuration, so the plan is read and tested without Docker:

- the web service (`MIDDOCK_WEB=SERVICE:PORT`) publishes its port only on loopback, on ports
  middock chose for the release's slot, and the edge sends traffic there;
- what must stay the same across releases stays: named volumes keep their app-wide name
  (external, so no release creates or removes them), user-named networks likewise;
- what cannot exist twice is refused up front with one line (a fixed host port, a
  `container_name`), unless the service stops before its successor starts (`MIDDOCK_STOP_FIRST`).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass

from .. import settings
from ..errors import MiddockError
from . import overrides


@dataclass(frozen=True)
class Web:
    """The service the edge sends requests to, and the container port it serves HTTP on."""

    service: str
    port: int


def web_target(env: Mapping[str, str]) -> Web | None:
    """`MIDDOCK_WEB=SERVICE:PORT`, or None for an app served in place (no edge)."""
    found = settings.env_value(env, "MIDDOCK_WEB")
    return None if found is None else Web(*found)


def health_path(env: Mapping[str, str]) -> str:
    return settings.env_value(env, "MIDDOCK_HEALTH_PATH")


def stop_first(env: Mapping[str, str]) -> list[str]:
    """`MIDDOCK_STOP_FIRST="scheduler consumer"`: services that must never run twice."""
    return list(settings.env_value(env, "MIDDOCK_STOP_FIRST"))


def other_slot(slot: str | None) -> str:
    return "green" if slot == "blue" else "blue"


def project_name(app: str, release: int) -> str:
    """A release's own Compose project; `_` never appears in an app name, so no app's project
    can be taken for another's release."""
    return f"{app}_r{release}"


def web_replicas(resolved: dict, web: Web) -> int:
    return overrides.replicas(resolved["services"][web.service])


def check(resolved: dict, web: Web, stopping_first: list[str]) -> None:
    """Refuse, with one line, what two releases of the app cannot both run."""
    services = resolved["services"]
    if web.service not in services:
        raise MiddockError(f"MIDDOCK_WEB names service {web.service!r}, which the compose file does not define")
    if web.service in stopping_first:
        raise MiddockError(f"the web service {web.service} cannot be in MIDDOCK_STOP_FIRST: the edge switches it")
    for name in stopping_first:
        if name not in services:
            raise MiddockError(f"MIDDOCK_STOP_FIRST names service {name!r}, which the compose file does not define")
    if web_replicas(resolved, web) < 1:
        raise MiddockError(f"the web service {web.service} is scaled to 0: nothing would serve")
    for name, spec in services.items():
        if name in stopping_first:
            continue
        if spec.get("container_name"):
            raise MiddockError(
                f"service {name} sets container_name, which two releases cannot share during a switch: "
                f"remove it, or list {name} in MIDDOCK_STOP_FIRST"
            )
        if name == web.service:
            continue
        for port in spec.get("ports") or []:
            if port.get("published"):
                raise MiddockError(
                    f"service {name} publishes host port {port['published']}, which two releases cannot share "
                    f"during a switch: remove it, or list {name} in MIDDOCK_STOP_FIRST"
                )


def beside(resolved: dict, app: str, project: str, web: Web, ports: list[int]) -> dict:
    """The configuration a release runs under `project`: the web service on loopback `ports`
    (one per container), app-wide volumes and user-named networks shared as external ones."""
    config = copy.deepcopy(resolved)
    config["name"] = project
    spec = config["services"][web.service]
    published = str(ports[0]) if len(ports) == 1 else f"{ports[0]}-{ports[-1]}"
    spec["ports"] = [{"target": web.port, "host_ip": "127.0.0.1", "published": published, "protocol": "tcp"}]
    for key, volume in (config.get("volumes") or {}).items():
        if not volume.get("external"):  # made once by ensure_shared, with its driver and options
            config["volumes"][key] = {"name": volume.get("name") or f"{app}_{key}", "external": True}
    for key, network in (config.get("networks") or {}).items():
        if network.get("external"):
            continue
        if network.get("name") in (None, f"{app}_{key}"):
            network.pop("name", None)  # the release's own network: its services find each other, not the old ones
        else:
            network["external"] = True
    return config


def shared_volumes(resolved: dict, app: str) -> dict[str, dict]:
    """The app-wide volumes a side-by-side release expects to exist: name -> their spec."""
    found = {}
    for key, volume in (resolved.get("volumes") or {}).items():
        if not volume.get("external"):
            found[volume.get("name") or f"{app}_{key}"] = {**volume, "key": key}
    return found


def shared_networks(resolved: dict, app: str) -> dict[str, dict]:
    """The user-named networks a side-by-side release expects to exist: name -> their spec."""
    found = {}
    for key, network in (resolved.get("networks") or {}).items():
        name = network.get("name")
        if not network.get("external") and name not in (None, f"{app}_{key}"):
            found[name] = {**network, "key": key}
    return found
