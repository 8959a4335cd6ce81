"""Where the apps' containers on this server come from, as a service on the host sees them: the
addresses they connect from and the host's address they reach it at (`host.docker.internal`). A
database on the host listens on the one and lets in the other (its listen_addresses and
pg_hba.conf); a host firewall accepts them.

On the root daemon they connect from middock's networks (networks.py) and reach the host at
Docker's default bridge. On a deploy user's rootless daemon both are the host's own address
(server/rootless.py): slirp4netns makes their connections from the host itself."""

from __future__ import annotations

import fcntl
import ipaddress
import socket
import struct

from ..server import rootless
from . import networks
from .engine import docker

SIOCGIFADDR = 0x8915  # Linux's ioctl for an interface's IPv4 address
BRIDGE_NAME = "com.docker.network.bridge.name"


def sources() -> list[ipaddress.IPv4Network]:
    """middock's ranges in the fewest CIDR blocks: every network middock makes for an app's
    containers is a subnet of one of them, whichever subnet is free at the time."""
    return list(ipaddress.collapse_addresses(networks.RANGES))


def interface_address(name: str) -> str | None:
    """An interface's IPv4 address; None when it has none, or does not exist."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            answer = fcntl.ioctl(probe.fileno(), SIOCGIFADDR, struct.pack("256s", name.encode()[:15]))
        except OSError:
            return None
    return socket.inet_ntoa(answer[20:24])


def host_gateway(client: docker.DockerClient) -> str | None:
    """The address `host.docker.internal` (Compose's `host-gateway`) stands for in a container:
    the address of Docker's default bridge (docker0, usually 172.17.0.1), the same for every
    app's networks; None when Docker runs without one."""
    try:
        bridge = client.api.inspect_network("bridge")
    except docker.errors.NotFound:
        return None
    return interface_address((bridge.get("Options") or {}).get(BRIDGE_NAME, "docker0"))


def for_apps(client: docker.DockerClient) -> dict:
    """`{"from": [CIDR, …], "host": ADDRESS or None}` for this user's daemon."""
    if rootless.in_use():
        host = rootless.host_address()
        return {"from": [f"{host}/32"] if host else [], "host": host, "rootless": True}
    return {"from": [str(subnet) for subnet in sources()], "host": host_gateway(client), "rootless": False}
