"""The Swarm this server manages, as `swarm:init` recorded it: the manager's address and the
registry every node pulls the apps' images from (middock's own, or one given by address).

Kept in `~/.middock/_swarm/` (`_` never starts an app name), beside the registry's CA, its
certificate, configuration and storage when middock runs it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import MiddockError
from .apps import middock_home, write_atomic


@dataclass(frozen=True)
class Cluster:
    advertise_addr: str
    registry: str  # HOST:PORT
    own_registry: bool  # middock runs it (Debian's docker-registry), with its own CA
    registry_ca: str = ""  # the CA file that signs the registry's certificate, if not a public one


def folder(home: Path | None = None) -> Path:
    return (home or middock_home()) / ".middock" / "_swarm"


def load(home: Path | None = None) -> Cluster | None:
    try:
        return Cluster(**json.loads((folder(home) / "cluster.json").read_text()))
    except FileNotFoundError:
        return None


def require(home: Path | None = None) -> Cluster:
    cluster = load(home)
    if cluster is None:
        raise MiddockError("this server manages no Swarm yet: run swarm:init first (as root, on the server)")
    return cluster


def save(cluster: Cluster, home: Path | None = None) -> None:
    folder(home).mkdir(parents=True, exist_ok=True)
    write_atomic(folder(home) / "cluster.json", json.dumps(asdict(cluster), indent=2) + "\n")
