"""Bounded HTTP load on loopback, to prove that a change of what runs drops no request.

Three kinds of clients run side by side until `stop()` (or a time and count limit):
keep-alive clients that reuse one connection, clients that open a new connection per request,
and clients of slow requests that are in flight whenever the edge switches. Every answer is
recorded with the version that gave it; anything but a 2xx answer is a failure.
"""

from __future__ import annotations

import http.client
import threading
import time
from dataclasses import dataclass, field


@dataclass
class Answer:
    sent: float
    received: float
    version: str
    slow: bool


@dataclass
class Report:
    answers: list[Answer] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return len(self.answers) + len(self.failures)

    def versions(self) -> set[str]:
        return {a.version for a in self.answers}

    def first_seen(self, version: str) -> float | None:
        times = [a.received for a in self.answers if a.version == version and not a.slow]
        return min(times) if times else None

    def summary(self) -> str:
        slow = [a for a in self.answers if a.slow]
        return (
            f"{self.total} requests, {len(self.failures)} failed, {len(slow)} slow, versions {sorted(self.versions())}"
            + (f"; first failures: {self.failures[:3]}" if self.failures else "")
        )

    def slow_in_flight_at(self, moment: float) -> list[Answer]:
        """Slow requests sent before `moment` and answered after it."""
        return [a for a in self.answers if a.slow and a.sent < moment < a.received]


class Load:
    """Clients against http://127.0.0.1:port, with an optional Host header; bounded in time and count."""

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
    ) -> None:
        self.address, self.port, self.host = address, port, host
        self.path, self.slow_path = path, slow_path
        self.kinds = [("keepalive", keepalive), ("fresh", fresh), ("slow", slow)]
        self.deadline = time.monotonic() + max_seconds
        self.max_requests = max_requests
        self.report = Report()
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.threads: list[threading.Thread] = []

    def __enter__(self) -> Load:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        for kind, count in self.kinds:
            for _ in range(count):
                thread = threading.Thread(target=self.client, args=(kind,), daemon=True)
                thread.start()
                self.threads.append(thread)

    def stop(self) -> Report:
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=30)
        return self.report

    def running(self) -> bool:
        return not self.stopping.is_set() and time.monotonic() < self.deadline and self.report.total < self.max_requests

    def connect(self, timeout: float) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.address, self.port, timeout=timeout)

    def client(self, kind: str) -> None:
        slow = kind == "slow"
        path = self.slow_path if slow else self.path
        headers = {"Host": self.host} if self.host else {}
        conn = self.connect(30 if slow else 10)
        while self.running():
            sent = time.monotonic()
            try:
                if kind != "keepalive":
                    conn.close()
                    conn = self.connect(30 if slow else 10)
                conn.request("GET", path, headers=headers)
                response = conn.getresponse()
                body = response.read().decode(errors="replace").strip()
                if not 200 <= response.status < 300:
                    raise OSError(f"HTTP {response.status}: {body[:80]}")
                answer = Answer(sent, time.monotonic(), body.split()[-1] if body else "", slow)
                with self.lock:
                    self.report.answers.append(answer)
            except (OSError, http.client.HTTPException) as error:
                with self.lock:
                    self.report.failures.append(
                        f"{kind} sent at {sent:.3f}, failed at {time.monotonic():.3f}: {type(error).__name__}: {error}"
                    )
                conn.close()
                conn = self.connect(30 if slow else 10)
                time.sleep(0.05)
        conn.close()


def main() -> None:
    """Run the load as a program (inside a network namespace, say) until `--stop-file` appears;
    print the report as JSON: total, failures, versions, and the slow requests in flight when
    the version given by --new first answered."""
    import argparse
    import json
    import os
    import sys

    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--address", default="127.0.0.1")
    parser.add_argument("--stop-file", required=True)
    parser.add_argument("--max-seconds", type=float, default=300)
    args = parser.parse_args()
    with Load(args.port, address=args.address, max_seconds=args.max_seconds) as load:
        print("started", flush=True)
        while not os.path.exists(args.stop_file) and load.running():
            time.sleep(0.1)
    report = load.report
    json.dump({"total": report.total, "failures": report.failures, "versions": sorted(report.versions())}, sys.stdout)


if __name__ == "__main__":
    main()
