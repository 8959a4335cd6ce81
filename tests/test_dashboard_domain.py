"""The dashboard on a domain of its own (`edge:set dashboard=DOMAIN`): served by the edge's Caddy
over HTTPS only (here with its local CA, `tls=internal`), plain HTTP redirected; the session
cookie is Secure there."""

from __future__ import annotations

import os
import re
import signal
import socket
import ssl
import subprocess
from collections.abc import Iterator

import pytest
from support.edge import caddy_local_root
from support.load import connection
from support.middock import Server
from support.ports import free_port
from support.waiting import wait_for

NAME = "dash.example.test"


def get(port: int, path: str, tls: ssl.SSLContext | None) -> tuple[int, dict[str, str], str]:
    conn = connection("127.0.0.1", port, 5, tls, NAME)
    try:
        conn.request("GET", path, headers={"Host": NAME})
        answer = conn.getresponse()
        return answer.status, {k.lower(): v for k, v in answer.getheaders()}, answer.read().decode(errors="replace")
    finally:
        conn.close()


@pytest.fixture
def dashboard_server(server: Server) -> Iterator[Server]:
    yield server
    pidfile = server.home / ".middock" / "_dashboard" / "serve.pid"
    if pidfile.exists():
        os.kill(int(pidfile.read_text()), signal.SIGTERM)


def test_the_dashboards_domain_is_served_over_https_and_redirected_from_http(dashboard_server: Server):
    server = dashboard_server
    port = free_port()
    http_port, https_port = server.start_edge("tls=internal", f"dashboard-port={port}")
    server.middock("edge:set", f"dashboard={NAME}")
    given = server.middock("dashboard").stdout
    login = re.search(rf"https://{re.escape(NAME)}:{https_port}(/login/\S+)", given)
    assert login and "through an SSH tunnel" in given, given
    tls = ssl.create_default_context(cafile=str(caddy_local_root(server)))

    def answer() -> tuple | None:
        try:
            return get(https_port, "/", tls)
        except (OSError, ssl.SSLError):
            return None

    status, _, body = wait_for(answer, timeout=30, what="the dashboard over HTTPS")
    assert status == 401 and "ssh " in body
    status, headers, _ = get(https_port, login[1], tls)
    assert status == 200
    assert "secure" in [flag.strip().lower() for flag in headers["set-cookie"].split(";")]
    status, headers, _ = get(http_port, "/apps?x=1", None)
    assert status == 308 and headers["location"] == f"https://{NAME}:{https_port}/apps?x=1"
    for address in subprocess.run(["hostname", "-I"], capture_output=True, text=True).stdout.split():
        with pytest.raises(ConnectionRefusedError):  # only loopback: Caddy's HTTPS is the way in
            socket.create_connection((address, port), timeout=5).close()


def test_without_https_the_dashboard_has_no_domain(server: Server):
    server.start_edge("tls=off")
    refused = server.middock("edge:set", f"dashboard={NAME}", check=False)
    assert refused.returncode == 1 and refused.stderr.startswith(" !     the dashboard is served on a domain only")
    assert len(refused.stderr.splitlines()) == 1
    assert '"dashboard": ""' in (server.home / ".middock" / "_edge" / "settings.json").read_text()
