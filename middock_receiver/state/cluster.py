"""The Swarm this server manages, as `swarm:init` recorded it: the manager's address and the
registry every node pulls the apps' images from (middock's own, or one given by address).

Kept in `~/.middock/_swarm/` (`_` never starts an app name), beside the registry's CA, its
certificate, configuration and storage when middock runs it.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import MiddockError
from ..settings import digits
from . import records
from .apps import middock_home, write_atomic


@dataclass(frozen=True)
class Cluster:
    advertise_addr: str
    registry: str  # HOST:PORT
    own_registry: bool  # middock runs it (Debian's docker-registry), with its own CA
    registry_ca: str = ""  # the CA file that signs the registry's certificate, if not a public one

    @property
    def push_registry(self) -> str:
        """Where middock pushes: its own registry's loopback side, else the registry itself."""
        return "127.0.0.1:5001" if self.own_registry else self.registry


def folder(home: Path | None = None) -> Path:
    return (home or middock_home()) / ".middock" / "_swarm"


ADDRESS = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]*\Z")


def check(record: Cluster, home: Path | None = None) -> Cluster:
    """As swarm:init writes it: addresses, and the registry's CA a file of the Swarm's folder."""
    host, _, port = record.registry.rpartition(":")
    if not ADDRESS.match(record.advertise_addr) or not ADDRESS.match(host) or not digits(port):
        raise MiddockError("an address is not HOST or HOST:PORT")
    ca = Path(record.registry_ca)
    if record.registry_ca and (not ca.is_absolute() or folder(home) not in ca.parents or ".." in ca.parts):
        raise MiddockError(f"the registry CA {record.registry_ca!r} is not a file of {folder(home)}")
    return record


def load(home: Path | None = None) -> Cluster | None:
    return records.load(folder(home) / "cluster.json", Cluster, lambda record: check(record, home))


def require(home: Path | None = None) -> Cluster:
    cluster = load(home)
    if cluster is None:
        raise MiddockError("this server manages no Swarm yet: run swarm:init first (as root, on the server)")
    return cluster


def save(cluster: Cluster, home: Path | None = None) -> None:
    folder(home).mkdir(parents=True, exist_ok=True)
    write_atomic(folder(home) / "cluster.json", json.dumps(asdict(cluster), indent=2) + "\n")
