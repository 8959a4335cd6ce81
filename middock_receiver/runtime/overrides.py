"""What middock changes in every release's resolved compose configuration, beyond pinning its
images: how many containers each service runs (`ps:scale`, kept per app), and a restart
policy for every service that sets none, so the live release comes back by itself after a
reboot or a restart of the Docker daemon (and a stopped app stays stopped: `unless-stopped`),
and rotated logs for every service that sets no `logging:`, so a chatty app never fills the disk.
Pure functions of the configuration, so they are read and tested without Docker.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from dataclasses import dataclass

from .. import settings
from ..errors import MiddockError
from ..state.processes import MAX_SCALE

RESTART_POLICY = "unless-stopped"
ASSIGNMENT = re.compile(r"(?P<service>[A-Za-z0-9][A-Za-z0-9_.-]*)=(?P<count>.*)\Z")


def parse_counts(assignments: list[str]) -> dict[str, int]:
    """`web=3 worker=0` -> {"web": 3, "worker": 0}; anything else is refused with one line."""
    counts = {}
    for assignment in assignments:
        found = ASSIGNMENT.match(assignment)
        if not found:
            raise MiddockError(f"expected SERVICE=COUNT, got {assignment!r}")
        count = found["count"]
        if not settings.digits(count) or int(count) > MAX_SCALE:
            raise MiddockError(
                f"{found['service']}: the count must be a whole number from 0 to {MAX_SCALE}, not {count!r}"
            )
        counts[found["service"]] = int(count)
    return counts


def replicas(spec: Mapping) -> int:
    """How many containers a service's own configuration asks for (1 unless it says)."""
    if spec.get("scale") is not None:
        return int(spec["scale"])
    deploy = spec.get("deploy") or {}
    return int(deploy["replicas"]) if deploy.get("replicas") is not None else 1


def fixed_ports(spec: Mapping) -> list[str]:
    """The single host ports a service publishes (a range, or no host port, can hold several)."""
    return [
        str(p["published"]) for p in spec.get("ports") or [] if p.get("published") and "-" not in str(p["published"])
    ]


def check_counts(resolved: Mapping, counts: Mapping[str, int], web: str | None = None) -> None:
    """Refuse counts for services the configuration lacks, and more than one container of a
    service that binds a fixed host port (the edge's web service publishes none of its own)."""
    services = resolved["services"]
    for service, count in counts.items():
        if service not in services:
            raise MiddockError(f"there is no service {service!r} (services: {', '.join(services)})")
        ports = fixed_ports(services[service])
        if count > 1 and service != web and ports:
            raise MiddockError(
                f"{service} publishes host port {ports[0]}, which only one container can bind: "
                f"it cannot run {count} containers (publish a range, or put it behind the edge with MIDDOCK_WEB)"
            )


def apply(resolved: dict, counts: Mapping[str, int], web: str | None = None) -> dict:
    """The configuration with the app's scale and the default restart policy."""
    check_counts(resolved, {s: n for s, n in counts.items() if s in resolved["services"]}, web)
    config = copy.deepcopy(resolved)
    for name, spec in config["services"].items():
        if not spec.get("restart"):
            spec["restart"] = RESTART_POLICY
        if name in counts:
            spec["scale"] = counts[name]
            if (spec.get("deploy") or {}).get("replicas") is not None:
                spec["deploy"]["replicas"] = counts[name]
    return config


@dataclass(frozen=True)
class LogRotation:
    """Options of Docker's `local` log driver: the size of each log file, and how many files a
    container keeps (the oldest goes when the last is full)."""

    size: str = settings.SETTINGS["MIDDOCK_LOG_MAX"].default[0]
    files: int = settings.SETTINGS["MIDDOCK_LOG_MAX"].default[1]

    def logging(self) -> dict:
        return {"driver": "local", "options": {"max-size": self.size, "max-file": str(self.files)}}


def log_rotation(value: str | None) -> LogRotation:
    """`MIDDOCK_LOG_MAX`: the size of each log file (`20m`), optionally followed by how many
    files (`20m 3`); unset, 10 MB and 5 files. Anything else is refused with one line."""
    text = (value or "").strip()
    if not text:
        return LogRotation()
    size, files = settings.log_max("MIDDOCK_LOG_MAX", text)
    return LogRotation(size, files) if files else LogRotation(size)


def with_log_rotation(resolved: dict, rotation: LogRotation) -> dict:
    """The configuration with every service that sets no `logging:` on Docker's `local` driver,
    rotated; a service's own `logging:` is kept as it is."""
    config = copy.deepcopy(resolved)
    for spec in config["services"].values():
        if not spec.get("logging"):
            spec["logging"] = rotation.logging()
    return config
