"""The edge tests' steps and checks: a push that goes live, a switch that drops no request, a site over
the edge's domains."""

from __future__ import annotations

import ssl
import time
from dataclasses import dataclass
from pathlib import Path

from support.load import Report, connection
from support.middock import Server


def deploy(work, message: str) -> str:
    work.commit(message)
    result = work.push()
    assert "is live at http://" in result.stderr, result.stderr
    return result.stderr


def assert_clean_switch(report: Report, old: str, new: str) -> None:
    """No request failed, both versions answered, and the slow requests in flight when the new
    version first answered were answered by the old one that accepted them."""
    assert not report.failures, report.summary()
    assert {old, new} <= report.versions(), report.summary()
    in_flight = report.slow_in_flight_at_switch(new)
    assert in_flight, f"no slow request was in flight at the switch: {report.summary()}"
    assert {a.version for a in in_flight} == {old}, in_flight


DOMAIN = "shop.example.test"


@dataclass(frozen=True)
class Site:
    """Where the edge serves the domains: pages on the HTTPS port (`tls`: the context that
    verifies their certificates), or on the HTTP port when TLS is off."""

    http_port: int
    https_port: int
    tls: ssl.SSLContext | None

    @property
    def port(self) -> int:
        return self.https_port if self.tls else self.http_port

    def url(self, name: str = DOMAIN) -> str:
        return f"https://{name}:{self.https_port}/" if self.tls else f"http://{name}:{self.http_port}/"

    def ask(self, name: str, path: str = "/", port: int | None = None) -> tuple[int, str, str | None]:
        """One GET of `name` (SNI and certificate for it over HTTPS): status, body, Location."""
        tls = None if port == self.http_port else self.tls
        conn = connection("127.0.0.1", port or self.port, 5, tls, name)
        try:
            conn.request("GET", path, headers={"Host": name})
            response = conn.getresponse()
            return response.status, response.read().decode(errors="replace").strip(), response.getheader("Location")
        finally:
            conn.close()

    def wait_for(self, name: str, page: str, timeout: float = 30) -> None:
        """Until `name` serves `page` (its certificate may be on its way)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                got: object = self.ask(name)
            except OSError as error:
                got = error
            if isinstance(got, tuple) and got[:2] == (200, page):
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"{name} on port {self.port} never served {page!r}: {got!r}")
            time.sleep(0.3)


def caddy_local_root(server: Server, timeout: float = 15) -> Path:
    """The root of Caddy's local CA (`tls=internal`), in the edge's certificate storage."""
    path = server.home / ".middock" / "_edge" / "caddy" / "pki" / "authorities" / "local" / "root.crt"
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"no local CA root at {path}"
        time.sleep(0.2)
    return path
