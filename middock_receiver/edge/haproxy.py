"""HAProxy, the part of the edge that routes every request and switches releases without
dropping one.

Every web app gets a frontend on its own port and two backends, its blue and green slots, whose
servers are the endpoints (ADDR:PORT) of that slot's web containers. Requests for the apps'
domains arrive from Caddy on two unix sockets (`_domains` for the served path, `_domains_http`
for plain HTTP when TLS is on, which redirects); a map names each domain's app, a second map
(`live.map`) names the slot each app serves from. A third frontend, `_ask`, tells Caddy which
names are domains, so that it gets certificates for them and no others.

What changes while apps deploy is runtime state, set in every worker through the master CLI and
never by a reload: a switch is one `set map`, a slot's new endpoints are `add/set/del server`,
a domain is `add/del map`. The configuration file says the same (it is rendered from middock's
records, pure functions here), so a restart brings back every route as it was. A reload is only
for what runtime commands cannot change (a new frontend: an app's first route, its port; the
edge's settings), and it is seamless: master-worker mode hands the listeners over, and
`idle-close-on-response` lets kept-alive clients finish their next request on the old worker.
Old workers keep every backend they had, and get the same runtime changes as the new one, so a
kept-alive connection to an old worker (Caddy keeps some) is routed as correctly as a new one;
a request for an app the old worker has never heard of goes on to the current worker.
"""

from __future__ import annotations

import hashlib
import re
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path

from ..errors import MiddockError

SLOTS = ("blue", "green")
MAINTENANCE = "maintenance"  # the backend APP.maintenance answers with the app's maintenance page
NO_RELEASE = "no_release"  # `_` never appears in an app name
HANDOVER = "_handover"
HANDOVER_HEADER = "X-Middock-Handover"
LAYOUT_MARK = "# layout "
HOST = "req.hdr(host),field(1,:),lower"  # the request's host name, without a port
RELOAD_PATIENCE = 5.0  # seconds a master reloading (re-executing itself) may not answer
BUFFER = 16384  # tune.bufsize, HAProxy's default: an answer it makes itself is built in one buffer
REWRITE_RESERVE = 1024  # tune.maxrewrite: kept free in a buffer for rewriting headers
PAGE_STATUS = HTTPStatus.SERVICE_UNAVAILABLE  # a maintenance page's answer: its status and headers
PAGE_TYPE = "text/html; charset=utf-8"
PAGE_RETRY_AFTER = 60


@dataclass(frozen=True)
class Frontend:
    """One app as HAProxy serves it."""

    app: str
    port: int
    public: bool  # bound on every address; else loopback only (it has domains, served through Caddy)
    slots: dict[str, tuple[str, ...]]  # slot -> ADDR:PORT of its web containers
    serving: str | None  # the slot the map points at
    page: Path | None = None  # its maintenance page (edge/maintenance.py)
    page_digest: str = ""  # of the page: HAProxy reads it when it loads, so a new one reloads
    maintenance: bool = False  # the map points at the page instead of the slot


@dataclass(frozen=True)
class Layout:
    """Where HAProxy's fixed parts are: its sockets, maps and the port Caddy asks on."""

    admin_socket: Path
    live_map: Path
    domains_map: Path
    domains_socket: Path
    domains_http_socket: Path
    ask_port: int
    https_redirect: str | None  # the HTTPS port suffix (":8443", or "" for 443) plain HTTP redirects to; None: TLS off


@dataclass(frozen=True)
class Server:
    name: str
    address: str
    port: int

    @property
    def endpoint(self) -> str:
        return f"{self.address}:{self.port}"


def backend(app: str, slot: str) -> str:
    return f"{app}.{slot}"


def servers(slot: str, endpoints: Iterable[str]) -> list[Server]:
    """A slot's servers, named by their place; a task on another node (health-checked) by
    another name than a container here, so a runtime change never has to add or drop a check."""
    found = []
    for i, endpoint in enumerate(endpoints, 1):
        address, _, port = endpoint.rpartition(":")
        found.append(
            Server(f"{slot}{i}" if endpoint.startswith("127.0.0.1:") else f"{slot}-task{i}", address, int(port))
        )
    return found


def checks(endpoint: str) -> str:
    """A task on another node is checked every second, so the edge stops sending it requests
    within seconds of its node dying; a container on this server needs none (its gate passed,
    and a checked server that is not up yet would refuse the first requests after a switch)."""
    return "" if endpoint.startswith("127.0.0.1:") else "check inter 1s fall 2 rise 2"


def known_host(domains_map: Path) -> str:
    return f"{{ {HOST},map({domains_map}) -m found }}"


def render_config(frontends: Iterable[Frontend], layout: Layout, with_servers: bool = True) -> str:
    """The whole configuration; its first line carries a digest of everything but the servers
    (which runtime commands change), so a change that needs a reload can be told apart."""
    not_found = 'content-type text/plain string "no app answers for this name\\n"'
    lines = [
        "global",
        "    master-worker",
        f"    stats socket {layout.admin_socket} mode 600 level admin expose-fd listeners",  # hands listeners over
        "    hard-stop-after 10m",
        "    maxconn 4096",
        "",
        "defaults",
        "    mode http",
        "    option idle-close-on-response",
        "    option redispatch",
        "    retries 3",
        "    retry-on conn-failure empty-response",
        "    http-reuse safe",
        "    timeout connect 5s",
        "    timeout client 1m",
        "    timeout http-request 30s",
        "    timeout http-keep-alive 1m",
        "    timeout queue 30s",
        "    timeout server 10m",
        "    timeout tunnel 1h",
        "",
        f"backend {NO_RELEASE}",
        '    http-request return status 503 content-type text/plain string "no release of this app is live\\n"',
        "",
        "# Requests Caddy took for the apps' domains: the domain's app, then its live slot.",
        "frontend _domains",
        f"    bind unix@{layout.domains_socket} mode 600",
        f"    http-request return status 404 {not_found} unless {known_host(layout.domains_map)}",
        f"    use_backend %[{HOST},map({layout.domains_map}),map({layout.live_map},{NO_RELEASE})]",
        f"    default_backend {HANDOVER}",
        "",
        "# A worker left by a reload knows no app added since: it hands such a request to the current one.",
        f"backend {HANDOVER}",
        f"    http-request return status 503 if {{ req.hdr({HANDOVER_HEADER}) -m found }}",
        f"    http-request set-header {HANDOVER_HEADER} 1",
        f"    server current unix@{layout.domains_socket}",
    ]
    if layout.https_redirect is not None:
        lines += [
            "",
            "# Plain HTTP Caddy took for a domain, when TLS is on: redirected to HTTPS.",
            "frontend _domains_http",
            f"    bind unix@{layout.domains_http_socket} mode 600",
            f"    http-request return status 404 {not_found} unless {known_host(layout.domains_map)}",
            f"    http-request redirect code 308 location https://%[{HOST}]{layout.https_redirect}%[pathq]",
        ]
    lines += [
        "",
        "# Caddy asks here before it gets a certificate for a name (on-demand TLS): only the apps' domains.",
        "frontend _ask",
        f"    bind 127.0.0.1:{layout.ask_port}",
        f"    http-request return status 200 if {{ url_param(domain),lower,map({layout.domains_map}) -m found }}",
        "    http-request return status 404",
    ]
    for fe in sorted(frontends, key=lambda f: f.app):
        address = "" if fe.public else "127.0.0.1"
        lines += [
            "",
            f"frontend {fe.app}",
            f"    bind {address}:{fe.port}",
            "    option forwardfor",
            f"    use_backend %[fe_name,map({layout.live_map},{NO_RELEASE})]",
        ]
        if fe.page:
            lines += [
                "",
                f"backend {backend(fe.app, MAINTENANCE)}",
                f"    # page {fe.page_digest}",
                f'    http-request return status {PAGE_STATUS.value} content-type "{PAGE_TYPE}" '
                f"file {fe.page} hdr Retry-After {PAGE_RETRY_AFTER}",
            ]
        for slot in SLOTS:
            lines += ["", f"backend {backend(fe.app, slot)}", "    balance roundrobin"]
            if with_servers:
                for server in servers(slot, fe.slots.get(slot, ())):
                    lines.append(f"    server {server.name} {server.endpoint} {checks(server.endpoint)}".rstrip())
    body = "\n".join(lines) + "\n"
    if not with_servers:
        return body
    digest = hashlib.sha256(render_config(frontends, layout, with_servers=False).encode()).hexdigest()[:16]
    return (
        f"{LAYOUT_MARK}{digest}\n# Written by middock from its records (edge:start, deploys); edits are lost.\n{body}"
    )


def page_head(length: int) -> bytes:
    """The status line and headers HAProxy answers a page of `length` bytes with (the
    content-length is its own)."""
    return (
        f"HTTP/1.1 {PAGE_STATUS.value} {PAGE_STATUS.phrase}\r\ncontent-type: {PAGE_TYPE}\r\n"
        f"content-length: {length}\r\nretry-after: {PAGE_RETRY_AFTER}\r\n\r\n"
    ).encode()


def page_fits(length: int) -> bool:
    """Whether HAProxy can answer with a page of `length` bytes: the page and its head must fit in
    a buffer less the rewrite reserve. HAProxy 2.6's `-c` refuses only a page over the whole
    buffer, warns over the reserve, and answers 500 instead once the page and the head in its
    internal form no longer fit (from 16,170 bytes of page)."""
    return len(page_head(length)) + length <= BUFFER - REWRITE_RESERVE


def bound_ports(config: str) -> dict[int, str]:
    """The port each app's frontend binds in a rendered configuration: port -> app."""
    found, app = {}, None
    for line in config.splitlines():
        if line.startswith("frontend "):
            name = line.split()[1]
            app = None if name.startswith("_") else name
        elif app and line.strip().startswith("bind "):
            port = line.rpartition(":")[2]
            if port.isdigit():
                found[int(port)] = app
    return found


def read_map(text: str) -> dict[str, str]:
    """A map file as render_map writes it."""
    return dict(line.split(" ", 1) for line in text.splitlines() if " " in line)


def layout_of(config: str) -> str | None:
    """The digest of the layout a rendered configuration carries."""
    first = config.split("\n", 1)[0]
    return first[len(LAYOUT_MARK) :] if first.startswith(LAYOUT_MARK) else None


def render_map(entries: dict[str, str]) -> str:
    return "".join(f"{key} {value}\n" for key, value in sorted(entries.items()))


def live_entries(frontends: Iterable[Frontend]) -> dict[str, str]:
    """Each app's backend: its serving slot, or its maintenance page."""
    return {
        fe.app: backend(fe.app, MAINTENANCE if fe.maintenance and fe.page else fe.serving)
        for fe in frontends
        if fe.serving
    }


@dataclass
class WorkerState:
    """What one worker routes by: its maps and the servers of its backends."""

    live: dict[str, str] = field(default_factory=dict)
    domains: dict[str, str] = field(default_factory=dict)
    backends: set[str] = field(default_factory=set)
    servers: dict[str, dict[str, tuple[Server, bool]]] = field(
        default_factory=dict
    )  # backend -> name -> (server, in maintenance)


def parse_map(text: str) -> dict[str, str]:
    """`show map FILE`: lines of `ID KEY VALUE`."""
    found = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) == 3 and fields[0].startswith("0x"):
            found[fields[1]] = fields[2]
    return found


def parse_servers(text: str) -> dict[str, dict[str, tuple[Server, bool]]]:
    """`show servers state` (format 1): backend -> server name -> (server, in maintenance)."""
    found: dict[str, dict[str, tuple[Server, bool]]] = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 19 or not fields[0].isdigit():
            continue
        name, address, admin, port = fields[3], fields[4], int(fields[6]), fields[18]
        maintenance = bool(admin & 0x01)  # SRV_ADMF_FMAINT: put in maintenance by a command
        found.setdefault(fields[1], {})[name] = (Server(name, address, int(port) if port.isdigit() else 0), maintenance)
    return found


def map_changes(path: Path, current: dict[str, str], wanted: dict[str, str], owned: set[str]) -> list[str]:
    """Commands that make a map's entries among `owned` keys say what `wanted` says."""
    commands = []
    for key in sorted(owned):
        if key in wanted and current.get(key) != wanted[key]:
            verb = "set" if key in current else "add"
            commands.append(f"{verb} map {path} {key} {wanted[key]}")
        elif key not in wanted and key in current:
            commands.append(f"del map {path} {key}")
    return commands


def server_changes(name: str, current: dict[str, tuple[Server, bool]], wanted: list[Server]) -> list[str]:
    """Commands that make a backend's servers the `wanted` ones: moved, added, or put in
    maintenance and deleted (a server still holding connections stays in maintenance). A checked
    server that is new or moved is declared up: the gate has just checked it, and HAProxy's own
    checks would keep it out for their first rounds."""
    commands = []
    for server in wanted:
        found = current.get(server.name)
        where = f"{name}/{server.name}"
        check = checks(server.endpoint)
        if found is None:
            commands.append(f"add server {where} {server.endpoint} {check}".rstrip())
            commands += [f"enable health {where}", f"enable server {where}"] if check else [f"enable server {where}"]
        else:
            present, maintenance = found
            if (present.address, present.port) == (server.address, server.port):
                if maintenance:
                    commands.append(f"enable server {where}")
                continue
            commands.append(f"set server {where} addr {server.address} port {server.port}")
            if maintenance:
                commands.append(f"enable server {where}")
        if check:
            commands.append(f"set server {where} health up")
    for extra in sorted(set(current) - {s.name for s in wanted}):
        if not current[extra][1]:
            commands.append(f"disable server {name}/{extra}")
        commands.append(f"del server {name}/{extra}")
    return commands


class Master:
    """HAProxy's master CLI (a unix socket): it reloads, and it reaches every worker, the current
    one and the old ones a reload leaves finishing their connections. Runtime changes and drains
    must see them all: an old worker still routes the next request of a kept-alive client with its
    own copy of the maps and servers, and counts the requests it has in flight."""

    def __init__(self, path: Path, timeout: float = 10) -> None:
        self.path = path
        self.timeout = timeout

    def command(self, line: str, patience: float = RELOAD_PATIENCE) -> str:
        """Send a line to the master CLI. A master reloading (another deploy's new route) is
        not there for a moment: it is asked again for up to `patience` seconds."""
        deadline = time.monotonic() + patience
        while True:
            try:
                with socket.socket(socket.AF_UNIX) as sock:
                    sock.settimeout(self.timeout)
                    sock.connect(str(self.path))
                    sock.sendall(line.encode() + b"; quit\n")  # else the master keeps the session open
                    chunks = []
                    while chunk := sock.recv(65536):
                        chunks.append(chunk)
                return b"".join(chunks).decode(errors="replace")
            except OSError as error:
                reloading = isinstance(error, (ConnectionRefusedError, FileNotFoundError))
                if reloading and time.monotonic() < deadline:
                    time.sleep(0.05)
                    continue
                reason = error.strerror or error
                raise MiddockError(f"the edge's HAProxy does not answer on {self.path} ({reason})") from None

    def processes(self, patience: float = RELOAD_PATIENCE) -> tuple[list[int], int]:
        """The workers' pids, the current one first, then the old ones; and how many reloads
        failed in a row (`[failed: N]` on the master's line)."""
        pids, failed = [], 0
        for line in self.command("show proc", patience).splitlines():
            fields = line.split()
            if len(fields) > 1 and fields[1] == "worker" and fields[0].isdigit():
                pids.append(int(fields[0]))
            elif len(fields) > 1 and fields[1] == "master":
                found = re.search(r"\[failed: (\d+)\]", line)
                failed = int(found[1]) if found else 0
        return pids, failed

    def workers(self, patience: float = RELOAD_PATIENCE) -> list[int]:
        """The workers' pids, the current one first, then the old ones."""
        return self.processes(patience)[0]

    def worker_command(self, pid: int, line: str) -> str:
        return self.command(f"@!{pid} {line}")

    def answers(self, patience: float = 0.0) -> bool:
        """Whether HAProxy runs with a worker; `patience`: or does within that many seconds
        (a master reloading for another deploy)."""
        deadline = time.monotonic() + patience
        while True:
            try:
                if self.workers(patience):
                    return True
            except MiddockError:
                pass
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)

    def reload(self, wait: float = 15) -> None:
        """A seamless reload: a new worker takes over the listeners; wait until it is there. A
        reload that fails (a port it cannot bind) leaves the workers it had, with the last
        configuration."""
        workers, failed = self.processes()
        self.command("reload")
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                now, failing = self.processes(0.0)
            except MiddockError:  # the master re-executing itself
                now, failing = workers, failed
            if now[:1] and now[:1] != workers[:1]:
                return
            if failing > failed:
                break
            time.sleep(0.05)
        raise MiddockError("the edge's HAProxy did not start a new worker after a reload: see its log")

    def state(self, pid: int, layout: Layout) -> WorkerState:
        return WorkerState(
            live=parse_map(self.worker_command(pid, f"show map {layout.live_map}")),
            domains=parse_map(self.worker_command(pid, f"show map {layout.domains_map}")),
            backends={line.strip() for line in self.worker_command(pid, "show backend").splitlines()[1:] if line},
            servers=parse_servers(self.worker_command(pid, "show servers state")),
        )

    def sync(self, frontends: list[Frontend], domains: dict[str, str], layout: Layout, apps: set[str]) -> None:
        """Make every worker route `apps` as the records say: the slot each serves from, the
        servers of both its slots (where the worker has them), and its domains. An old worker
        that stops answering meanwhile is finishing: it is left alone."""
        wanted = {fe.app: fe for fe in frontends if fe.app in apps}
        live = live_entries(wanted.values())
        names = {name for name, app in domains.items() if app in apps}
        for index, pid in enumerate(self.workers()):
            try:
                state = self.state(pid, layout)
                commands = []  # the servers first: a switch must find its slot's servers in place
                for fe in wanted.values():
                    for slot in SLOTS:
                        name = backend(fe.app, slot)
                        if name in state.backends:
                            wanted_servers = servers(slot, fe.slots.get(slot, ()))
                            commands += server_changes(name, state.servers.get(name, {}), wanted_servers)
                commands += map_changes(layout.live_map, state.live, live, set(apps))
                owned = names | {n for n, app in state.domains.items() if app in apps}
                commands += map_changes(layout.domains_map, state.domains, {n: domains[n] for n in names}, owned)
                for line in commands:
                    self.worker_command(pid, line)
                if index == 0:
                    self.verify(pid, layout, live, {n: domains[n] for n in names}, wanted)
            except MiddockError:
                if index == 0:
                    raise

    def verify(
        self, pid: int, layout: Layout, live: dict[str, str], domains: dict[str, str], wanted: dict[str, Frontend]
    ) -> None:
        """The current worker must route as the records say, or the change failed."""
        state = self.state(pid, layout)
        for app, value in live.items():
            if state.live.get(app) != value:
                raise MiddockError(f"the edge refused to route {app} to {value}: it says {state.live.get(app)}")
        for name, app in domains.items():
            if state.domains.get(name) != app:
                raise MiddockError(f"the edge refused to route the domain {name} to {app}")
        for fe in wanted.values():
            for slot in SLOTS:
                name = backend(fe.app, slot)
                if name not in state.backends:
                    raise MiddockError(f"the edge has no backend {name}; restart it with: middock edge:start")
                active = {s.endpoint for s, maintenance in state.servers.get(name, {}).values() if not maintenance}
                if active != {s.endpoint for s in servers(slot, fe.slots.get(slot, ()))}:
                    raise MiddockError(f"the edge refused the servers of {name}: it has {sorted(active)}")

    def stats(self, pid: int) -> dict[tuple[str, str], dict[str, str]]:
        """One worker's `show stat` as {(proxy, server or FRONTEND/BACKEND): {column: value}}."""
        lines = self.worker_command(pid, "show stat").splitlines()
        if not lines or not lines[0].startswith("# "):
            raise MiddockError(f"the edge's HAProxy answered `show stat` with {lines[:1]}")
        columns = lines[0][2:].split(",")
        rows = {}
        for line in lines[1:]:
            values = line.split(",")
            if len(values) >= 2:
                rows[(values[0], values[1])] = dict(zip(columns, values, strict=False))
        return rows

    def in_flight(self, app: str, slot: str) -> int | None:
        """Requests the slot is serving or queueing now, in every worker; None when HAProxy cannot say."""
        total = 0
        try:
            workers = self.workers()
            for pid in workers:
                row = self.stats(pid).get((backend(app, slot), "BACKEND"))
                if row is None and pid == workers[0]:
                    return None
                if row is not None:  # an old worker from before the app's frontend knows no such slot
                    total += int(row.get("scur") or 0) + int(row.get("qcur") or 0)
        except MiddockError:
            return None
        return total if workers else None

    def drain(self, app: str, slot: str, timeout: float, poll: float = 0.1) -> float | None:
        """Wait until the slot has no request in flight, twice in a row (a request routed just
        before the switch may not be counted yet); returns the seconds it took, None on timeout.
        When HAProxy cannot say, the slot is not known to be idle: wait on."""
        started = time.monotonic()
        idle = 0
        while time.monotonic() - started < timeout:
            idle = idle + 1 if self.in_flight(app, slot) == 0 else 0
            if idle >= 2:
                return time.monotonic() - started
            time.sleep(poll)
        return None
