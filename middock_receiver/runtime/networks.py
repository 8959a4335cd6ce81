"""The networks of the apps' Compose projects, each on a small subnet of middock's own.

Docker's default address pools hold about 30 networks, and every release beside another is a
Compose project with networks of its own: a server of a few dozen apps would run dry. So
middock creates a project's networks itself, before Compose runs, each on a /26 (62 addresses)
of a range that clashes with no route of this host and no network Docker has, and hands them to
Compose as external ones. Networks go with their project (labelled as Compose labels its own).
One allocation at a time on this machine (a lock in /run/middock, which only root and the deploy
users may open), so two deploys, of two apps or two homes, never take the same subnet.
"""

from __future__ import annotations

import contextlib
import copy
import ipaddress
from collections.abc import Iterator
from pathlib import Path

from .. import flock
from ..errors import MiddockError
from ..server import machine
from .compose import NETWORK_LABEL, PROJECT_LABEL
from .engine import docker

PREFIX = 26
RANGES = tuple(ipaddress.IPv4Network(f"10.{second}.0.0/16") for second in range(200, 255))
LOCK = "networks.lock"
LOCK_WAIT = 60.0  # seconds: an allocation takes one or two; past this, something holds it wrongly


def own(config: dict, project: str) -> dict[str, str]:
    """The project's own networks (not external, not named by the user for the whole app):
    compose key -> Docker name."""
    found = {}
    for key, network in (config.get("networks") or {}).items():
        if network.get("external"):
            continue
        name = network.get("name") or f"{project}_{key}"
        if name == f"{project}_{key}":
            found[key] = name
    return found


def host_routes(path: Path = Path("/proc/net/route")) -> list[ipaddress.IPv4Network]:
    """The IPv4 destinations this host routes (the default route aside)."""
    found = []
    try:
        lines = path.read_text().splitlines()[1:]
    except OSError:
        return found
    for line in lines:
        fields = line.split()
        if len(fields) < 8 or fields[7] == "00000000":
            continue
        destination = ipaddress.IPv4Address(int.from_bytes(bytes.fromhex(fields[1]), "little"))
        mask = bin(int.from_bytes(bytes.fromhex(fields[7]), "little")).count("1")
        found.append(ipaddress.IPv4Network(f"{destination}/{mask}", strict=False))
    return found


def docker_subnets(client: docker.DockerClient) -> list[ipaddress.IPv4Network]:
    found = []
    for network in client.api.networks():
        for pool in (network.get("IPAM") or {}).get("Config") or []:
            with contextlib.suppress(ValueError, KeyError):
                subnet = ipaddress.ip_network(pool["Subnet"], strict=False)
                if subnet.version == 4:
                    found.append(subnet)
    return found


def free_subnet(taken: list[ipaddress.IPv4Network]) -> ipaddress.IPv4Network:
    """The first /26 of middock's ranges that overlaps nothing taken."""
    for whole in RANGES:
        clashing = [t for t in taken if t.overlaps(whole)]
        if any(whole.subnet_of(t) for t in clashing if t.prefixlen <= whole.prefixlen):
            continue
        for subnet in whole.subnets(new_prefix=PREFIX):
            if not any(subnet.overlaps(t) for t in clashing):
                return subnet
    raise MiddockError(
        f"no free subnet left for a network in middock's ranges ({RANGES[0]} to {RANGES[-1]}, a /{PREFIX} each): "
        "remove unused Docker networks (docker network prune)"
    )


@contextlib.contextmanager
def allocating(wait: float = LOCK_WAIT) -> Iterator[None]:
    """One allocation at a time on this machine, whoever allocates (any home, any deploy user)."""
    with flock.held(machine.lock(LOCK), timeout=wait, what="the network allocation lock"):
        yield


def exists(client: docker.DockerClient, name: str) -> bool:
    return any(network.name == name for network in client.networks.list(names=[name]))  # the filter takes parts


def create(client: docker.DockerClient, name: str, spec: dict, labels: dict[str, str]) -> None:
    """Create network `name` as `spec` says (a Compose network), on a free subnet of middock's
    unless the spec chose its own addresses. A network that exists already is left as it is."""
    if exists(client, name):
        return
    ipam = spec.get("ipam") or {}
    pools = [docker.types.IPAMPool(subnet=c["subnet"]) for c in ipam.get("config") or [] if c.get("subnet")]
    with allocating():
        if exists(client, name):
            return
        if not pools:
            subnet = free_subnet(docker_subnets(client) + host_routes())
            pools = [docker.types.IPAMPool(subnet=str(subnet))]
        try:
            client.networks.create(
                name,
                driver=spec.get("driver") or "bridge",
                options=spec.get("driver_opts") or {},
                ipam=docker.types.IPAMConfig(pool_configs=pools),
                internal=bool(spec.get("internal")),
                attachable=bool(spec.get("attachable")),
                labels={**labels, **(spec.get("labels") or {})},
            )
        except docker.errors.APIError as error:
            raise MiddockError(f"Docker could not create the network {name}: {error.explanation or error}") from None


def prepared(client: docker.DockerClient, config: dict, project: str) -> dict:
    """The configuration with its project's own networks created (on middock's subnets) and
    given to Compose as external ones."""
    config = copy.deepcopy(config)
    for key, name in own(config, project).items():
        spec = config["networks"][key]
        create(client, name, spec, {PROJECT_LABEL: project, NETWORK_LABEL: key})
        config["networks"][key] = {"name": name, "external": True}
    return config
