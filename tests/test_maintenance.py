"""Maintenance mode through the real edge: toggled under load, every request gets the app or the
maintenance page (never a reset, never another error), nothing reloads, deploys go on behind
it, and it survives an edge restart."""

from __future__ import annotations

import time
import urllib.error
import urllib.request

from support.apps import write_web_app
from support.edge import deploy
from support.groups import ZERO_DROP
from support.load import Load
from support.middock import Server, Workdir
from support.web import http_get

from middock_receiver.edge import haproxy
from middock_receiver.edge.settings import EdgePaths

PAGE = "<h1>Back soon</h1>\n"


def maintenance_answer(port: int) -> tuple[int, str | None, str]:
    """Status, Retry-After and body of GET / on the app's port."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
            return response.status, response.headers.get("Retry-After"), response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Retry-After"), error.read().decode()


@ZERO_DROP
def test_maintenance_toggled_under_load_fails_no_request_but_the_page_and_reloads_nothing(
    server: Server, work: Workdir, app: str
):
    server.start_edge()
    write_web_app(work, "v1")
    work.write("maintenance.html", PAGE)
    deploy(work, "v1")
    port = server.app_port(app)
    master = haproxy.Master(EdgePaths(server.home).haproxy_master_socket)
    worker = master.workers()[0]

    with Load(port, slow=0) as load:
        for _ in range(3):
            time.sleep(0.4)
            server.middock("maintenance:on", app)
            time.sleep(0.4)
            server.middock("maintenance:off", app)
        time.sleep(0.4)
    report = load.report
    pages = [f for f in report.failures if "HTTP 503: <h1>Back soon</h1>" in f]
    assert pages and len(pages) == len(report.failures), report.summary()
    assert report.versions() == {"v1"}, report.summary()
    assert master.workers()[0] == worker  # no reload: one map entry changed, six times

    server.middock("maintenance:on", app)
    assert maintenance_answer(port) == (503, "60", PAGE)
    assert "maintenance on" in server.middock("maintenance", app).stdout
    write_web_app(work, "v2")
    pushed = deploy(work, "v2")  # deploys go on behind the page
    assert "Release 2" in pushed and maintenance_answer(port)[0] == 503

    server.middock("edge:stop")
    server.middock("edge:start")
    assert maintenance_answer(port)[:2] == (503, "60")  # the page survives a restart
    server.middock("maintenance:off", app)
    assert http_get(port) == "v2\n"

    in_place = server.create_app("m")
    refused = server.middock("maintenance:on", in_place, check=False)
    assert refused.returncode == 1 and len(refused.stderr.splitlines()) == 1, refused.stderr
    assert "not served by the edge" in refused.stderr
