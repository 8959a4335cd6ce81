"""More than one server: make this server a Swarm manager with a registry, and manage the nodes.
An app moves to the Swarm with `apps:set APP target swarm` (cli/apps.py)."""

from __future__ import annotations

import argparse
import os
import pwd
import shlex
import shutil
from pathlib import Path

from .. import daemons
from ..errors import MiddockError
from ..pipeline.deploy import docker_client
from ..runtime import registry, swarm
from ..server import account
from ..state import cluster
from ..state.apps import write_atomic
from .commands import argument, command, emit_json
from .edge import USER_OPTION, edge_user

CERTS_DIR = "/etc/docker/certs.d"


def home_of(user: pwd.struct_passwd) -> Path:
    return Path(os.environ.get("MIDDOCK_HOME") or user.pw_dir)


def trust(certs_dir: Path, address: str, ca: Path) -> None:
    """Make this engine trust the registry's CA (Docker reads certs.d at each push and pull)."""
    folder = certs_dir / address
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(ca, folder / "ca.crt")


@command("swarm:init", "make this server a Swarm manager with a registry for the apps' images", app=False)
@argument("--advertise-addr", help="the address other nodes reach this server at (default: Docker's choice)")
@argument("--registry", metavar="HOST:PORT", help="use this existing registry instead of running one")
@argument("--registry-ca", metavar="FILE", help="the CA of that registry's certificate, if not a public one")
@argument("--registry-port", type=int, default=registry.DEFAULT_PORT, help="the port of middock's own registry")
@argument("--certs-dir", default=CERTS_DIR, help=f"where this engine reads registry CAs (default: {CERTS_DIR})")
@argument(*USER_OPTION[0], **USER_OPTION[1])
def cmd_swarm_init(args: argparse.Namespace) -> int:
    user = edge_user(args)
    home = home_of(user)
    client = docker_client()
    address = args.advertise_addr or client.info().get("Swarm", {}).get("NodeAddr") or ""
    if not address:
        raise MiddockError("give the address other servers reach this one at: swarm:init --advertise-addr IP")
    created = swarm.ensure_manager(client, address)
    address = client.info()["Swarm"].get("NodeAddr") or address
    if args.registry:
        if args.registry_ca and not Path(args.registry_ca).is_file():
            raise MiddockError(f"cannot read the registry CA {args.registry_ca}")
        record = cluster.Cluster(
            address, args.registry, False, str(Path(args.registry_ca).resolve()) if args.registry_ca else ""
        )
        with account.acting_as(user):
            cluster.save(record, home)
    else:
        record = cluster.Cluster(address, f"{address}:{args.registry_port}", True)
        files = registry.Files(cluster.folder(home) / "registry")
        with account.acting_as(user):
            registry.make_certificates(files, address)
            write_atomic(files.config, registry.render_config(files, record.registry))
            files.data.mkdir(exist_ok=True)
            record = cluster.Cluster(record.advertise_addr, record.registry, True, str(files.ca))
            cluster.save(record, home)
        trust(Path(args.certs_dir), record.registry, files.ca)
        owner = daemons.Owner.of(user)
        daemons.start(registry.daemon(files), owner)
        api = registry.Registry(record.registry, record.registry_ca)
        daemons.wait_started(registry.daemon(files), api.answers)
    print(f"-----> {'Made' if created else 'Using'} the Swarm managed by this server ({address})")
    print(f"       registry: {record.registry}" + (" (middock's own)" if record.own_registry else ""))
    print("       add a server: run the output of `middock nodes:join-script` on it, as root")
    return 0


def node_rows() -> list[dict]:
    return swarm.nodes(docker_client())


@command("nodes", "the Swarm's nodes: name, address, role, state, availability, tasks", app=False, json=True)
def cmd_nodes(args: argparse.Namespace) -> int:
    rows = node_rows()
    if args.json:
        return emit_json(rows)
    for row in rows:
        print(
            f"{row['name']:<24} {row['address']:<16} {row['role']:<8} {row['state']:<6} "
            f"{row['availability']:<7} {row['tasks']} task{'s' * (row['tasks'] != 1)}"
        )
    return 0


@command("nodes:join-script", "the commands to run as root on a new server to join it as a worker", app=False)
@argument(*USER_OPTION[0], **USER_OPTION[1])
def cmd_nodes_join_script(args: argparse.Namespace) -> int:
    record = cluster.require(home_of(edge_user(args)))
    lines = [
        "#!/bin/sh",
        "# Run as root on the new server: it trusts middock's registry, then joins the Swarm.",
        "set -e",
    ]
    if record.registry_ca:
        folder = shlex.quote(f"{CERTS_DIR}/{record.registry}")
        lines += [f"mkdir -p {folder}", f"cat > {folder}/ca.crt <<'CERTIFICATE'"]
        lines += [Path(record.registry_ca).read_text().rstrip("\n"), "CERTIFICATE"]
    lines.append(shlex.join(swarm.join_command(docker_client(), record.advertise_addr)))
    print("\n".join(lines))
    return 0


@command("nodes:drain", "move every task off a node (before maintenance or removal)", app=False)
@argument("node")
def cmd_nodes_drain(args: argparse.Namespace) -> int:
    swarm.set_availability(docker_client(), args.node, "drain")
    print(f"-----> {args.node} is draining: Swarm moves its tasks to the other nodes")
    return 0


@command("nodes:activate", "take a drained node back", app=False)
@argument("node")
def cmd_nodes_activate(args: argparse.Namespace) -> int:
    swarm.set_availability(docker_client(), args.node, "active")
    print(f"-----> {args.node} takes tasks again")
    return 0


@command("nodes:remove", "forget a node that has left the Swarm (or is gone)", app=False)
@argument("node")
def cmd_nodes_remove(args: argparse.Namespace) -> int:
    swarm.remove_node(docker_client(), args.node)
    print(f"-----> {args.node} is no longer part of the Swarm")
    return 0
