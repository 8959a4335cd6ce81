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
    slots: dict[str, tuple[int, ...]]  # slot -> the loopback ports of its web containers
    serving: str | None  # the slot the map points at


def backend(app: str, slot: str) -> str:
    return f"{app}.{slot}"


def render_config(frontends: Iterable[Frontend], admin_socket: Path, live_map: Path) -> str:
    lines = [
        "# Written by middock from its records (edge:start, deploys); edits are lost.",
        "global",
        "    master-worker",
        f"    stats socket {admin_socket} mode 600 level admin expose-fd listeners",
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
            lines += [f"    server {slot}{i} 127.0.0.1:{port}" for i, port in enumerate(ports, 1)]
    return "\n".join(lines) + "\n"


def render_map(frontends: Iterable[Frontend]) -> str:
    return "".join(f"{fe.app} {backend(fe.app, fe.serving)}\n" for fe in frontends if fe.serving)


class Admin:
    """HAProxy's runtime API on a unix socket (the stats socket, or the master's for `reload`)."""

    def __init__(self, path: Path, timeout: float = 10) -> None:
        self.path = path
        self.timeout = timeout

    def command(self, line: str) -> str:
        try:
            with socket.socket(socket.AF_UNIX) as sock:
                sock.settimeout(self.timeout)
                sock.connect(str(self.path))
                sock.sendall(line.encode() + b"\n")
                chunks = []
                while chunk := sock.recv(65536):
                    chunks.append(chunk)
        except OSError as error:
            raise MiddockError(
                f"the edge's HAProxy does not answer on {self.path} ({error.strerror or error})"
            ) from None
        return b"".join(chunks).decode(errors="replace")

    def answers(self) -> bool:
        try:
            self.command("show info")
            return True
        except MiddockError:
            return False

    def info(self) -> dict[str, str]:
        """`show info`: Pid, Uptime, CurrConns…; empty when HAProxy does not answer."""
        try:
            text = self.command("show info")
        except MiddockError:
            return {}
        return dict(line.split(": ", 1) for line in text.splitlines() if ": " in line)

    def set_serving(self, live_map: Path, app: str, slot: str) -> None:
        """Point the app's frontend at `slot`: from the next request on, atomically."""
        reply = self.command(f"set map {live_map} {app} {backend(app, slot)}").strip()
        if reply and "not found" in reply.lower():
            reply = self.command(f"add map {live_map} {app} {backend(app, slot)}").strip()
        if reply:
            raise MiddockError(f"the edge refused to switch {app} to its {slot} slot: {reply.splitlines()[0]}")

    def stats(self) -> dict[tuple[str, str], dict[str, str]]:
        """`show stat` as {(proxy, server or FRONTEND/BACKEND): {column: value}}."""
        text = self.command("show stat")
        lines = text.splitlines()
        if not lines or not lines[0].startswith("# "):
            return {}
        columns = lines[0][2:].split(",")
        rows = {}
        for line in lines[1:]:
            values = line.split(",")
            if len(values) >= 2:
                rows[(values[0], values[1])] = dict(zip(columns, values, strict=False))
        return rows

    def in_flight(self, app: str, slot: str) -> int:
        """Requests the slot is serving or queueing now."""
        row = self.stats().get((backend(app, slot), "BACKEND"), {})
        return int(row.get("scur") or 0) + int(row.get("qcur") or 0)

    def drain(self, app: str, slot: str, timeout: float, poll: float = 0.1) -> float | None:
        """Wait until the slot has no request in flight, twice in a row (a request routed just
        before the switch may not be counted yet); returns the seconds it took, None on timeout."""
        started = time.monotonic()
        idle = 0
        while time.monotonic() - started < timeout:
            idle = idle + 1 if self.in_flight(app, slot) == 0 else 0
            if idle >= 2:
                return time.monotonic() - started
            time.sleep(poll)
        return None
