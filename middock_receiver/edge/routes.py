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
from dataclasses import asdict, dataclass, field

from ..errors import MiddockError
from ..state import apps
from ..state.apps import App, check_domain, write_atomic

APP_PORTS = range(8000, 9000)  # the first free one is an app's public port
SLOT_PORTS = range(20000, 30000)  # loopback ports of the slots' web containers
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
    path = record_path(app)
    try:
        stored = json.loads(path.read_text())
        if not isinstance(stored, dict):
            raise ValueError("not a JSON object")
        return AppEdge(**{k: v for k, v in stored.items() if k in AppEdge.__dataclass_fields__}).check()
    except FileNotFoundError:
        return AppEdge()
    except (ValueError, TypeError, MiddockError) as error:
        raise MiddockError(f"{path} is not a valid record: {error}; fix or remove it") from None


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


def owner(name: str, among: list[App]) -> App | None:
    for app in among:
        if name in load(app).domains:
            return app
    return None


def bindable(port: int, address: str = "") -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((address, port))
        except OSError:
            return False
    return True


def taken_ports(among: list[App]) -> set[int]:
    taken = set()
    for app in among:
        taken |= load(app).ports
        port = app_port(app)
        if port:
            taken.add(port)
    return taken


def choose_app_port(app: App) -> int:
    """The app's public port: its setting, else the first free one of APP_PORTS (then kept)."""
    port = app_port(app)
    if port:
        return port
    taken = taken_ports(apps.all_apps(app.home))
    for candidate in APP_PORTS:
        if candidate not in taken and bindable(candidate):
            apps.write_setting(app, "port", str(candidate))
            return candidate
    raise MiddockError(f"no free port for {app.name} in {APP_PORTS.start}-{APP_PORTS.stop - 1}: set one with apps:set")


def choose_slot_ports(app: App, record: AppEdge, slot: str, count: int) -> list[int]:
    """`count` consecutive free loopback ports for a slot's web containers; the slot's own when
    it already has that many and they are still free (then the edge's servers stay as they are)."""
    current = [int(e.rpartition(":")[2]) for e in record.slots.get(slot, []) if e.startswith(LOOPBACK)]
    if len(current) == count == len(record.slots.get(slot, [])) and all(bindable(p, "127.0.0.1") for p in current):
        return current
    taken = taken_ports(apps.all_apps(app.home)) - set(current)
    start = SLOT_PORTS.start
    while start + count <= SLOT_PORTS.stop:
        run = list(range(start, start + count))
        busy = [port for port in run if port in taken or not bindable(port, "127.0.0.1")]
        if not busy:
            record.slots[slot] = [f"{LOOPBACK}{port}" for port in run]
            save(app, record)
            return run
        start = busy[-1] + 1
    raise MiddockError(f"no {count} free consecutive loopback ports for {app.name}'s web containers")
