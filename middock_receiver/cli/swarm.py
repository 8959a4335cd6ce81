"""More than one server: make this server a Swarm manager with a registry, and manage the nodes.
An app moves to the Swarm with `apps:set APP target swarm` (cli/apps.py)."""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path

from .. import process
from ..errors import MiddockError, quoted
from ..runtime import registry, swarm
from ..runtime.engine import docker_client
from ..server import daemons, privileges, rootless
from ..state import cluster
from ..state.apps import all_apps, write_atomic
from .commands import argument, command, emit_json

CERTS_DIR = "/etc/docker/certs.d"
ADVERTISE_ADDR = re.compile(r"[A-Za-z0-9][A-Za-z0-9.:%_-]{0,99}\Z")  # an IP address, or a network interface's name


def trust(certs_dir: Path, address: str, ca_pem: str) -> None:
    """Make this engine trust the registry's CA (Docker reads certs.d at each push and pull).
    Root writes it into a folder of its own, never through a link."""
    registry.check_address(address)
    folder = certs_dir / address
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / "ca.crt", os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "w") as f:
        f.write(registry.check_ca_pem(ca_pem))


def make_swarm(home: Path, advertise_addr: str, existing: str, port: int, given_ca: str) -> dict:
    """The deploy user's part of swarm:init: the Swarm, and the registry's record, certificates,
    configuration and passwords in its home. Returns what root needs: the registry and its CA."""
    client = docker_client()
    address = advertise_addr or client.info().get("Swarm", {}).get("NodeAddr") or ""
    if not address:
        raise MiddockError("give the address other servers reach this one at: swarm:init --advertise-addr IP")
    created = swarm.ensure_manager(client, address)
    address = client.info()["Swarm"].get("NodeAddr") or address
    folder = cluster.folder(home)
    folder.mkdir(parents=True, exist_ok=True)
    if existing:
        ca = ""
        if given_ca:
            ca = str(folder / "registry-ca.crt")
            write_atomic(Path(ca), given_ca)
        record = cluster.Cluster(address, registry.check_address(existing), False, ca)
    else:
        files = registry.Files(folder / "registry")
        record = cluster.Cluster(address, f"{address}:{port}", True, str(files.ca))
        registry.make_certificates(files, address)
        registry.make_credentials(files, record.registry)
        for user, config in ((registry.PULL_USER, files.config), (registry.PUSH_USER, files.push_config)):
            write_atomic(config, registry.render_config(files, record.registry, user))
        files.data.mkdir(exist_ok=True)
    cluster.save(record, home)
    ca_pem = registry.read_ca(Path(record.registry_ca)) if record.registry_ca else ""
    return {
        "created": created,
        "address": address,
        "registry": record.registry,
        "own": record.own_registry,
        "ca": ca_pem,
    }


def wait_for_registry(home: Path, address: str) -> None:
    """Until both sides of middock's registry answer (asking for a password)."""
    files = registry.Files(cluster.folder(home) / "registry")
    pull, push = registry.daemons(files)
    daemons.wait_started(pull, registry.Registry(address, str(files.ca)).answers)
    daemons.wait_started(push, registry.Registry.own(files).answers)


def guard_task_ports(manager: str) -> None:
    """Root's part: only the manager reaches a task's port, here too (the join script does it
    on every other node); under systemd a unit sets the rule again at every boot."""
    if Path("/run/systemd/system").is_dir():
        unit = daemons.UNIT_DIR / swarm.TASK_PORTS_UNIT
        write_atomic(unit, swarm.task_ports_unit(manager))
        daemons.systemctl("daemon-reload")
        daemons.systemctl("enable", swarm.TASK_PORTS_UNIT)
    remove, insert = swarm.task_ports_commands(manager)
    process.capture(remove)  # absent the first time
    result = process.capture(insert)
    if result.returncode != 0:
        problem = (result.stderr.strip().splitlines() or ["no message"])[-1]
        raise MiddockError(f"could not close the tasks' ports to all but the manager: {problem}")


@command(
    "swarm:init", "make this server a Swarm manager with a registry for the apps' images", app=False, privileges="own"
)
@argument("--advertise-addr", help="the address other nodes reach this server at (default: Docker's choice)")
@argument("--registry", metavar="HOST:PORT", help="use this existing registry instead of running one")
@argument("--registry-ca", metavar="FILE", help="the CA of that registry's certificate, if not a public one")
@argument("--registry-port", type=int, default=registry.DEFAULT_PORT, help="the port of middock's own registry")
@argument("--certs-dir", default=CERTS_DIR, help=f"where this engine reads registry CAs (default: {CERTS_DIR})")
@argument(
    "--yes-deploy-is-root", action="store_true",
    help="move the deploy user to the root Docker daemon, which a Swarm needs: every deploy key is then root",
)  # fmt: skip
def cmd_swarm_init(args: argparse.Namespace) -> int:
    check_options(args)
    user = privileges.target(args.user)
    home = privileges.home_of(user)
    if privileges.dropping(user) and not rootless.on_root_daemon(user.pw_name):
        if not args.yes_deploy_is_root:
            raise MiddockError(
                f"a Swarm needs the root Docker daemon, and {user.pw_name} on it is root-equivalent, and so is "
                "every deploy key: add --yes-deploy-is-root to accept that (apps of one server never need a Swarm)"
            )
        rootless.join_root_daemon(user, privileges.as_user(user, app_names, home))
        print(f"-----> {user.pw_name} now uses the root Docker daemon (the docker group): every deploy key is root")
    given_ca = ""
    if args.registry_ca is not None:  # a file the admin named: read before acting as the user
        try:
            given_ca = registry.check_ca_pem(Path(args.registry_ca).read_text())
        except (OSError, UnicodeDecodeError) as error:
            raise MiddockError(f"cannot read the registry CA {quoted(args.registry_ca)}: {error}") from None
    made = privileges.as_user(
        user, make_swarm, home, args.advertise_addr or "", args.registry or "", args.registry_port, given_ca
    )
    if made["ca"]:
        trust(Path(args.certs_dir), made["registry"], made["ca"])
    if os.geteuid() == 0:
        guard_task_ports(made["address"])
    if made["own"]:
        owner = daemons.Owner.of(user)
        for daemon in registry.daemons(registry.Files(cluster.folder(home) / "registry")):
            if daemons.uses_systemd(owner):
                daemons.start(daemon, owner)  # root enables its unit
            else:
                privileges.as_user(user, daemons.start, daemon, owner)
        privileges.as_user(user, wait_for_registry, home, made["registry"])
    print(f"-----> {'Made' if made['created'] else 'Using'} the Swarm managed by this server ({made['address']})")
    print(f"       registry: {made['registry']}" + (" (middock's own)" if made["own"] else ""))
    print("       add a server: run the output of `middock nodes:join-script` on it, as root")
    return 0


def app_names(home: Path) -> list[str]:
    return [app.name for app in all_apps(home)]


def check_options(args: argparse.Namespace) -> None:
    """swarm:init's options, each checked before anything is made (the Swarm, the registry,
    Docker's trust): one that is given must be good, an empty one is not the default."""
    if args.advertise_addr is not None and not ADVERTISE_ADDR.match(args.advertise_addr):
        raise MiddockError(
            f"--advertise-addr is an IP address or a network interface's name, not {quoted(args.advertise_addr)}"
        )
    if args.registry is not None:
        registry.check_address(args.registry)
    if not 0 < args.registry_port < 65536:
        raise MiddockError(f"--registry-port must be a port number (1-65535), not {args.registry_port}")
    if not Path(args.certs_dir).is_absolute():
        raise MiddockError(f"--certs-dir must be an absolute path, not {quoted(args.certs_dir)}")


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
def cmd_nodes_join_script(args: argparse.Namespace) -> int:
    home = privileges.home_of(privileges.target(args.user))
    record = cluster.require(home)
    ca = registry.read_ca(Path(record.registry_ca)) if record.registry_ca else ""
    files = registry.Files(cluster.folder(home) / "registry")
    password = registry.read_password(files, registry.PULL_USER) if record.own_registry else ""
    join = swarm.join_command(docker_client(), record.advertise_addr)
    print(swarm.join_script(record.registry, ca, password, record.advertise_addr, join), end="")
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
