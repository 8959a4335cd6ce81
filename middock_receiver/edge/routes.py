"""Which app the edge serves where: each web app's port, its domains, its two slots.

Per app, `~/.middock/APP/edge.json` records its domains, the loopback ports of its blue and
green slots, and the slot the edge sends requests to (`serving`); the app's public port is the
`port` setting (`apps:set APP port N`), chosen at its first deploy when not set. The proxies'
configurations are derived from these records alone, so they can always be written again.
"""

from __future__ import annotations

import ipaddress
import json
import re
import socket
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace

from ..errors import MiddockError
from ..settings import check_domain, ports_in
from ..state import apps, records
from ..state.apps import App, write_atomic
from .settings import EdgePaths, read_settings

LOOPBACK = "127.0.0.1:"


SLOT_NAMES = ("blue", "green")
ENDPOINT = re.compile(r"(?P<address>[0-9]{1,3}(?:\.[0-9]{1,3}){3}):(?P<port>[0-9]{1,5})\Z")


def check_endpoint(endpoint: object) -> str:
    """An IPv4 ADDR:PORT: all a slot's record may hold (it becomes a line of HAProxy's configuration)."""
    found = ENDPOINT.match(endpoint) if isinstance(endpoint, str) else None
    if not found or not 0 < int(found["port"]) < 65536:
        raise MiddockError(f"{endpoint!r} is not an endpoint (IPv4 ADDR:PORT)")
    ipaddress.IPv4Address(found["address"])  # each part at most 255
    return endpoint  # type: ignore[return-value]


@dataclass
class AppEdge:
    domains: list[str] = field(default_factory=list)
    slots: dict[str, list[str]] = field(default_factory=dict)  # slot -> ADDR:PORT of its web containers
    serving: str | None = None
    maintenance: bool = False  # every request answered with the maintenance page (maintenance:on)

    def check(self) -> AppEdge:
        """Every field as middock writes it, whoever wrote the file: domains as domains:add
        takes them, the two slots by name, endpoints ADDR:PORT."""
        if not isinstance(self.domains, list) or not isinstance(self.slots, dict):
            raise MiddockError("domains must be a list and slots a mapping")
        for name in self.domains:
            check_domain(name if isinstance(name, str) else repr(name))
        for slot, endpoints in self.slots.items():
            if slot not in SLOT_NAMES or not isinstance(endpoints, list):
                raise MiddockError(f"{slot!r} is not a slot (blue or green) with a list of endpoints")
            for endpoint in endpoints:
                check_endpoint(endpoint)
        if self.serving is not None and self.serving not in SLOT_NAMES:
            raise MiddockError(f"serving {self.serving!r} is not a slot (blue or green)")
        if not isinstance(self.maintenance, bool):
            raise MiddockError(f"maintenance must be true or false, not {self.maintenance!r}")
        return self

    @property
    def ports(self) -> set[int]:
        """The loopback ports its slots hold on this server."""
        return {int(e.rpartition(":")[2]) for ends in self.slots.values() for e in ends if e.startswith(LOOPBACK)}


def record_path(app: App):
    return app.state / "edge.json"


def load(app: App) -> AppEdge:
    """The app's record, checked as it is read: a bad one is one error naming the file, never a
    line of a proxy's configuration."""
    return records.load(record_path(app), AppEdge, AppEdge.check) or AppEdge()


def set_endpoints(app: App, slot: str, endpoints: list[str]) -> None:
    """Where the slot's web containers answer (a release on the Swarm: its tasks)."""
    record = load(app)
    record.slots[slot] = endpoints
    save(app, record)


def save(app: App, record: AppEdge) -> None:
    write_atomic(record_path(app), json.dumps(asdict(record.check()), indent=2) + "\n")


def app_port(app: App) -> int | None:
    port = apps.read_settings(app).get("port")
    return int(port) if port else None


def bindable(port: int, address: str = "") -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((address, port))
        except OSError:
            return False
    return True


@dataclass(frozen=True)
class Contribution:
    """What one app brings to the edge's shared configuration."""

    app: App
    record: AppEdge
    port: int | None  # its public port, once it has one

    @property
    def served(self) -> bool:
        """Whether the edge gives it a frontend (from its first switch)."""
        return bool(self.record.serving and self.port)


def contributions(among: list[App]) -> tuple[list[Contribution], dict[str, str]]:
    """Each app's part of the edge, read and checked on its own; an app whose record or settings
    are not valid is left out, with the one line naming the file, so it never stops the others."""
    found, refused = [], {}
    for app in among:
        try:
            found.append(Contribution(app, load(app), app_port(app)))
        except MiddockError as error:
            refused[app.name] = str(error)
    return found, refused


def port_conflicts(
    parts: list[Contribution],
    reserved: dict[int, str],
    held: dict[int, str],
    free: Callable[[int], bool] = bindable,
) -> dict[str, str]:
    """The served apps whose public port HAProxy could not bind beside the others': one of the
    edge's own (`reserved`: port -> what), one of the apps' containers' loopback ports, another
    served app's, or a new one that is not `free` on this server. A port two apps claim stays
    with the one the edge binds it for now (`held`: port -> app); when neither, it goes to
    neither. Returns app -> the one line."""
    containers = {port: part.app.name for part in parts for port in part.record.ports}
    claims = defaultdict(list)
    for part in parts:
        if part.served:
            claims[part.port].append(part)
    refused = {}
    for port, claimants in claims.items():
        for part in claimants:
            others = [p.app.name for p in claimants if p is not part]
            if port in reserved:
                why = f"is the edge's {reserved[port]}"
            elif port in containers:
                why = f"is a loopback port of {containers[port]}'s containers"
            elif others and held.get(port) != part.app.name:
                why = f"is {others[0]}'s too"
            elif held.get(port) != part.app.name and not free(port):
                why = "is in use on this server"
            else:
                continue
            refused[part.app.name] = (
                f"{part.app.name}'s port {port} ({part.app.settings_file}) {why}: "
                f"choose another with: apps:set {part.app.name} port N"
            )
    return refused


def edge_port_taken(parts: list[Contribution], settings: dict[int, str], held: dict[int, str]) -> str | None:
    """Why the edge's own ports (`settings`: port -> setting) cannot be had, when one is a port
    the edge binds now for an app that keeps it: the edge's new settings are then what is
    refused, not the app."""
    for part in parts:
        if part.served and part.port in settings and held.get(part.port) == part.app.name:
            setting = settings[part.port]
            return (
                f"the edge's {setting} {part.port} is {part.app.name}'s port: choose another with: edge:set {setting}=N"
            )
    return None


def domain_conflicts(parts: list[Contribution], held: dict[str, str]) -> tuple[list[Contribution], dict[str, str]]:
    """Each domain for one app only: one that two records list stays with the app the edge
    serves it for now (`held`: name -> app), or with neither. Returns the contributions without
    the domains they lose, and app -> the one line saying so."""
    claims = defaultdict(set)
    for part in parts:
        for name in part.record.domains:
            claims[name].add(part.app.name)
    lost = {name: names - {held.get(name)} for name, names in claims.items() if len(names) > 1}
    kept, refused = [], {}
    for part in parts:
        mine = [name for name in part.record.domains if part.app.name in lost.get(name, ())]
        if mine:
            other = min(claims[mine[0]] - {part.app.name})
            refused[part.app.name] = (
                f"{mine[0]} ({record_path(part.app)}) is a domain of {other} too: "
                f"remove it with: domains:remove {part.app.name} {mine[0]}"
            )
            part = replace(part, record=replace(part.record, domains=[n for n in part.record.domains if n not in mine]))
        kept.append(part)
    return kept, refused


def owner(name: str, among: list[App]) -> App | None:
    """The app whose record lists the domain (a record that is not valid lists none)."""
    for part in contributions(among)[0]:
        if name in part.record.domains:
            return part.app
    return None


def taken_ports(among: list[App]) -> set[int]:
    """The ports the apps' records hold (a port a record not valid holds is only found in use)."""
    taken = set()
    for part in contributions(among)[0]:
        taken |= part.record.ports
        if part.port:
            taken.add(part.port)
    return taken


def choose_app_port(app: App) -> int:
    """The app's public port: its setting, else the first free one of the edge's `app-ports` (then kept)."""
    port = app_port(app)
    if port:
        return port
    taken = taken_ports(apps.all_apps(app.home))
    choices = read_settings(EdgePaths(app.home)).app_ports
    for candidate in ports_in(choices):
        if candidate not in taken and bindable(candidate):
            apps.write_setting(app, "port", str(candidate))
            return candidate
    raise MiddockError(f"no free port for {app.name} in {choices} (edge:set app-ports): set one with apps:set")


def choose_slot_ports(app: App, record: AppEdge, slot: str, count: int) -> list[int]:
    """`count` consecutive free loopback ports for a slot's web containers; the slot's own when
    it already has that many and they are still free (then the edge's servers stay as they are)."""
    current = [int(e.rpartition(":")[2]) for e in record.slots.get(slot, []) if e.startswith(LOOPBACK)]
    if len(current) == count == len(record.slots.get(slot, [])) and all(bindable(p, "127.0.0.1") for p in current):
        return current
    taken = taken_ports(apps.all_apps(app.home)) - set(current)
    choices = ports_in(read_settings(EdgePaths(app.home)).slot_ports)
    start = choices.start
    while start + count <= choices.stop:
        run = list(range(start, start + count))
        busy = [port for port in run if port in taken or not bindable(port, "127.0.0.1")]
        if not busy:
            record.slots[slot] = [f"{LOOPBACK}{port}" for port in run]
            save(app, record)
            return run
        start = busy[-1] + 1
    raise MiddockError(
        f"no {count} free consecutive loopback ports for {app.name}'s web containers in {choices.start}-"
        f"{choices.stop - 1} (edge:set slot-ports)"
    )
