"""HAProxy, the part of the edge that switches releases without dropping a request.

Every web app gets a frontend on its own port and two backends, its blue and green slots, whose
servers are the loopback ports that slot's web containers publish. One map file says which slot
each app's frontend uses; a deploy flips it for its app with one runtime command (`set map`),
atomically and without a reload, and then watches the old slot's current sessions fall to zero:
that is the drain. The configuration is rendered from middock's records (pure functions here),
so a restart of HAProxy brings back every route as it was. A reload (a new app, a new scale) is
seamless: master-worker mode hands the listeners over, and `idle-close-on-response` lets kept-
alive clients finish their next request before the old worker closes their connection.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ..errors import MiddockError

NO_RELEASE = "no_release"  # `_` never appears in an app name


@dataclass(frozen=True)
class Frontend:
    """One app as HAProxy serves it."""

    app: str
    port: int
    public: bool  # bound on every address; else loopback only (Caddy serves the app's domains)
    slots: dict[str, tuple[str, ...]]  # slot -> ADDR:PORT of its web containers
    serving: str | None  # the slot the map points at


def backend(app: str, slot: str) -> str:
    return f"{app}.{slot}"


def checks(endpoint: str) -> str:
    """A task on another node is checked every second, so the edge stops sending it requests
    within seconds of its node dying; a container on this server needs none (its gate passed,
    and a checked server that is not up yet would refuse the first requests after a switch)."""
    return "" if endpoint.startswith("127.0.0.1:") else " check inter 1s fall 2 rise 2"


def render_config(frontends: Iterable[Frontend], admin_socket: Path, live_map: Path) -> str:
    lines = [
        "# Written by middock from its records (edge:start, deploys); edits are lost.",
        "global",
        "    master-worker",
        f"    stats socket {admin_socket} mode 600 level admin expose-fd listeners",  # hands listeners over
        "    hard-stop-after 10m",
        "    maxconn 4096",
        "",
        "defaults",
        "    mode http",
        "    option forwardfor",
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
    ]
    for fe in sorted(frontends, key=lambda f: f.app):
        address = "" if fe.public else "127.0.0.1"
        lines += [
            "",
            f"frontend {fe.app}",
            f"    bind {address}:{fe.port}",
            f"    use_backend %[fe_name,map({live_map},{NO_RELEASE})]",
        ]
        for slot, ports in sorted(fe.slots.items()):
            lines += ["", f"backend {backend(fe.app, slot)}", "    balance roundrobin"]
            lines += [f"    server {slot}{i} {end}{checks(end)}" for i, end in enumerate(ports, 1)]
    return "\n".join(lines) + "\n"


def render_map(frontends: Iterable[Frontend]) -> str:
    return "".join(f"{fe.app} {backend(fe.app, fe.serving)}\n" for fe in frontends if fe.serving)


class Master:
    """HAProxy's master CLI (a unix socket): it reloads, and it reaches every worker, the current
    one and the old ones a reload leaves finishing their connections. A switch and a drain must
    see them all: an old worker still routes the next request of a kept-alive client with its
    own copy of the map, and counts the requests it has in flight."""

    def __init__(self, path: Path, timeout: float = 10) -> None:
        self.path = path
        self.timeout = timeout

    def command(self, line: str) -> str:
        try:
            with socket.socket(socket.AF_UNIX) as sock:
                sock.settimeout(self.timeout)
                sock.connect(str(self.path))
                sock.sendall(line.encode() + b"; quit\n")  # else the master keeps the session open
                chunks = []
                while chunk := sock.recv(65536):
                    chunks.append(chunk)
        except OSError as error:
            reason = error.strerror or error
            raise MiddockError(f"the edge's HAProxy does not answer on {self.path} ({reason})") from None
        return b"".join(chunks).decode(errors="replace")

    def workers(self) -> list[int]:
        """The workers' pids, the current one first, then the old ones."""
        pids = []
        for line in self.command("show proc").splitlines():
            fields = line.split()
            if len(fields) > 1 and fields[1] == "worker" and fields[0].isdigit():
                pids.append(int(fields[0]))
        return pids

    def worker_command(self, pid: int, line: str) -> str:
        return self.command(f"@!{pid} {line}")

    def answers(self) -> bool:
        try:
            return bool(self.workers())
        except MiddockError:
            return False

    def reload(self, wait: float = 15) -> None:
        """A seamless reload: a new worker takes over the listeners; wait until it is there."""
        before = self.workers()[:1]
        self.command("reload")
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                now = self.workers()[:1]
            except MiddockError:
                now = before
            if now and now != before:
                return
            time.sleep(0.05)
        raise MiddockError("the edge's HAProxy did not start a new worker after a reload: see its log")

    def set_serving(self, live_map: Path, app: str, slot: str) -> None:
        """Point the app's frontend at `slot` in every worker: from the next request on."""
        workers = self.workers()
        for pid in workers:
            try:
                reply = self.worker_command(pid, f"set map {live_map} {app} {backend(app, slot)}").strip()
                if reply and "not found" in reply.lower():
                    reply = self.worker_command(pid, f"add map {live_map} {app} {backend(app, slot)}").strip()
            except MiddockError:
                if pid == workers[0]:
                    raise
                continue  # an old worker that has just finished
            if reply and pid == workers[0]:
                raise MiddockError(f"the edge refused to switch {app} to its {slot} slot: {reply.splitlines()[0]}")

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
