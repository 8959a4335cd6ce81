"""Bounded HTTP load on loopback, to prove that a change of what runs drops no request.

Four kinds of clients run side by side until `stop()` (or a time and count limit):
keep-alive clients that reuse one connection, clients that open a new connection per request,
clients of slow requests that are in flight whenever the edge switches, and idle clients that
keep a connection open but send only when the test calls `burst()`: a proxy keeps such idle
connections (its own to the next hop too) across a change, and a kept connection that a change
broke fails only on its next request, which back-to-back clients rarely leave to chance.
Every answer is recorded with the version that gave it; anything but a 2xx answer is a failure
(or, for a load of `redirects`, anything but a redirect).

The load goes to an app's own port on the edge, or through Caddy to a domain: plain HTTP with a
`Host`, or HTTPS (`tls`: the context that verifies the certificate) with the domain as SNI.
"""

from __future__ import annotations

import http.client
import ssl
import threading
import time
from collections import Counter
from dataclasses import dataclass, field


@dataclass
class Answer:
    sent: float
    received: float
    version: str
    slow: bool
    kind: str = ""


@dataclass
class Report:
    answers: list[Answer] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return len(self.answers) + len(self.failures)

    def versions(self) -> set[str]:
        return {a.version for a in self.answers}

    def summary(self) -> str:
        slow = [a for a in self.answers if a.slow]
        idle = [a for a in self.answers if a.kind == "idle"]
        failed = Counter(failure.split()[0] for failure in self.failures)
        return (
            f"{self.total} requests, {len(self.failures)} failed"
            + (f" ({', '.join(f'{kind} {n}' for kind, n in sorted(failed.items()))})" if failed else "")
            + f", {len(slow)} slow, {len(idle)} idle, versions {sorted(self.versions())}"
            + (f"; first failures: {self.failures[:3]}" if self.failures else "")
        )

    def slow_in_flight_at_switch(self, new: str) -> list[Answer]:
        """Slow requests in flight when the edge switched to version `new`: sent before the last
        quick request on a fresh connection that the old version answered before `new` first did
        (so sent before the switch; one sent between that request and the first `new` answered
        may have reached either), and answered after `new` first answered."""
        quick = [a for a in self.answers if a.version == new and not a.slow]
        if not quick:
            return []
        first_new, seen = min(a.sent for a in quick), min(a.received for a in quick)
        old = [a.sent for a in self.answers if a.kind == "fresh" and a.version != new and a.sent < first_new]
        if not old:
            return []
        return [a for a in self.answers if a.slow and a.sent < max(old) and a.received > seen]


class TLSConnection(http.client.HTTPConnection):
    """HTTPS to an address with the certificate checked for another name, sent as SNI: the
    edge on 127.0.0.1 serving a domain (http.client's own HTTPSConnection takes the name from
    the address it connects to)."""

    def __init__(self, address: str, port: int, timeout: float, context: ssl.SSLContext, server_name: str) -> None:
        super().__init__(address, port, timeout=timeout)
        self.context, self.server_name = context, server_name

    def connect(self) -> None:
        super().connect()
        self.sock = self.context.wrap_socket(self.sock, server_hostname=self.server_name)


def connection(
    address: str, port: int, timeout: float, tls: ssl.SSLContext | None = None, server_name: str | None = None
) -> http.client.HTTPConnection:
    """An HTTP connection to address:port, or with `tls` an HTTPS one for `server_name`; it
    connects at its first request."""
    if tls is None:
        return http.client.HTTPConnection(address, port, timeout=timeout)
    return TLSConnection(address, port, timeout, tls, server_name or address)


# Between the starts of the slow clients: each sends a 3-second request, then the next, so clients started
# at once would all be between two requests at the same moments, and a switch at such a moment has no slow
# request in flight to prove it drains them.
SLOW_STAGGER = 1.0


class Load:
    """Clients against 127.0.0.1:port, with an optional Host header (and SNI with `tls`);
    bounded in time and count."""

    def __init__(
        self,
        port: int,
        host: str | None = None,
        path: str = "/",
        slow_path: str = "/cgi-bin/slow",
        keepalive: int = 3,
        fresh: int = 3,
        slow: int = 2,
        max_seconds: float = 180,
        max_requests: int = 300_000,
        address: str = "127.0.0.1",
        tls: ssl.SSLContext | None = None,
        idle: int = 0,
        idle_path: str | None = None,
        redirects: bool = False,
        pace: float = 0.01,
    ) -> None:
        self.address, self.port, self.host, self.tls = address, port, host, tls
        self.path, self.slow_path, self.idle_path = path, slow_path, idle_path or path
        self.redirects = redirects
        # Each client's pause between requests: with the default, 6 clients still send one about every
        # two milliseconds, which covers every moment of a switch (it takes tens), and leave the cores to
        # what is tested and to the tests beside; 0 sends back to back, as hard as it can (the benchmarks).
        self.pace = pace
        self.headers = {"Host": host} if host else {}
        self.kinds = [("keepalive", keepalive), ("fresh", fresh), ("slow", slow), ("idle", idle)]
        self.deadline = time.monotonic() + max_seconds
        self.max_requests = max_requests
        self.report = Report()
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.threads: list[threading.Thread] = []
        self.bursting = threading.Condition()
        self.bursts = 0  # how many bursts were asked for
        self.pending = 0  # idle clients yet to answer the current burst

    def __enter__(self) -> Load:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        for kind, count in self.kinds:
            for number in range(count):
                target = self.idle_client if kind == "idle" else self.client
                thread = threading.Thread(target=target, args=(kind, number), daemon=True)
                thread.start()
                self.threads.append(thread)

    def stop(self) -> Report:
        self.stopping.set()
        with self.bursting:
            self.bursting.notify_all()
        for thread in self.threads:
            thread.join(timeout=30)
        return self.report

    def running(self) -> bool:
        return not self.stopping.is_set() and time.monotonic() < self.deadline and self.report.total < self.max_requests

    def connect(self, timeout: float) -> http.client.HTTPConnection:
        return connection(self.address, self.port, timeout, self.tls, self.host)

    def burst(self, timeout: float = 30) -> None:
        """Every idle client sends one request at once on the connection it kept open since its
        last one; returns when all have answered (or `timeout`)."""
        with self.bursting:
            self.pending = dict(self.kinds)["idle"]
            self.bursts += 1
            self.bursting.notify_all()
            self.bursting.wait_for(lambda: self.pending <= 0 or not self.running(), timeout)

    def ask(self, conn: http.client.HTTPConnection, kind: str, path: str) -> bool:
        """One GET on `conn`, its answer or its failure recorded; False when it failed (the
        connection is then closed)."""
        sent = time.monotonic()
        try:
            conn.request("GET", path, headers=self.headers)
            response = conn.getresponse()
            body = response.read().decode(errors="replace").strip()
            if self.redirects and 300 <= response.status < 400 and response.getheader("Location"):
                version = f"{response.status} {response.getheader('Location')}"
            elif not self.redirects and 200 <= response.status < 300:
                version = body.split()[-1] if body else ""
            else:
                raise OSError(f"HTTP {response.status}: {body[:80]}")
            with self.lock:
                self.report.answers.append(Answer(sent, time.monotonic(), version, kind == "slow", kind))
            return True
        except (OSError, http.client.HTTPException) as error:
            with self.lock:
                self.report.failures.append(
                    f"{kind} sent at {sent:.3f}, failed at {time.monotonic():.3f}: {type(error).__name__}: {error}"
                )
            conn.close()
            return False

    def client(self, kind: str, number: int) -> None:
        slow = kind == "slow"
        path = self.slow_path if slow else self.path
        timeout = 30 if slow else 10
        if slow:  # staggered a second apart: at any moment one of them has a request in flight
            self.stopping.wait(number * SLOW_STAGGER)
        conn = self.connect(timeout)
        while self.running():
            if kind != "keepalive":
                conn.close()
                conn = self.connect(timeout)
            if not self.ask(conn, kind, path):
                conn = self.connect(timeout)
                time.sleep(0.05)
            elif self.pace:
                time.sleep(self.pace)
        conn.close()

    def idle_client(self, kind: str, number: int) -> None:
        """A kept-alive connection that waits, unused, for each burst."""
        conn = self.connect(10)
        seen = self.bursts
        while True:
            with self.bursting:
                self.bursting.wait_for(lambda last=seen: self.bursts > last or not self.running(), timeout=0.5)
                if not self.running():
                    break
                if self.bursts == seen:
                    continue
                seen = self.bursts
            if not self.ask(conn, kind, self.idle_path):
                conn = self.connect(10)
            with self.bursting:
                self.pending -= 1
                self.bursting.notify_all()
        conn.close()


def main() -> None:
    """Run the load as a program (inside a network namespace or a server bed, say) until
    `--stop-file` appears or its bounds are reached; print the report as JSON: total, failures,
    versions, and whether the stop file ended it (rather than the bounds)."""
    import argparse
    import json
    import os
    import sys

    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--address", default="127.0.0.1")
    parser.add_argument("--stop-file", required=True)
    parser.add_argument("--host", help="the Host header (and SNI with TLS): an app's domain on the edge")
    parser.add_argument("--max-seconds", type=float, default=300)
    parser.add_argument("--max-requests", type=int, default=300_000)
    args = parser.parse_args()
    bounds = {"max_seconds": args.max_seconds, "max_requests": args.max_requests}
    with Load(args.port, host=args.host, address=args.address, **bounds) as load:
        print("started", flush=True)
        while not os.path.exists(args.stop_file) and load.running():
            time.sleep(0.1)
        stopped = os.path.exists(args.stop_file)
    report = load.report
    found = {"total": report.total, "failures": report.failures, "versions": sorted(report.versions())}
    json.dump({**found, "stopped": stopped}, sys.stdout)


if __name__ == "__main__":
    main()
