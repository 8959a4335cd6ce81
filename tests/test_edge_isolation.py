"""One app can never stop the edge for the others: what an app brings to the shared proxy
configuration (its maintenance page, port, domains) is checked on its own, as HAProxy will read
it; a part that fails gives that app the default page or fails that app's own change with one
line, and another app's push, rollback and domains:add go on under load without one failed
request."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from support.apps import write_web_app
from support.edge import deploy
from support.groups import ZERO_DROP
from support.load import Load
from support.middock import Server, Workdir
from support.ports import free_port

from middock_receiver.edge import haproxy, maintenance, routes
from middock_receiver.errors import MiddockError
from middock_receiver.state.apps import App

LIMIT = maintenance.MAX_PAGE


def test_a_page_is_taken_up_to_the_limit_with_its_head_and_refused_one_byte_over():
    """The limit counts the page with the status line and headers HAProxy sends with it, under
    its buffer less the rewrite reserve; invalid UTF-8 and NUL bytes are refused, never grown."""
    at_limit = b"a" * LIMIT
    assert maintenance.page_problem(at_limit) is None
    assert len(haproxy.page_head(LIMIT)) + LIMIT <= haproxy.BUFFER - haproxy.REWRITE_RESERVE
    assert len(haproxy.page_head(LIMIT + 1)) + LIMIT + 1 > haproxy.BUFFER - haproxy.REWRITE_RESERVE
    assert (
        maintenance.page_problem(at_limit + b"a") == f"is {LIMIT + 1} bytes, over the {LIMIT} the edge can answer with"
    )
    assert maintenance.page_problem("<p>Zurück gleich — 🛠</p>".encode()) is None
    assert maintenance.page_problem(b"\xff" * 6000) == "is not UTF-8 text (byte 0 is not)"
    assert maintenance.page_problem(b"<p>\0</p>") == "holds NUL bytes"


def test_a_page_is_read_only_when_it_is_a_regular_file_and_never_whole_when_huge(tmp_path: Path):
    """A symlink, a folder and a FIFO are refused without following, reading or waiting; a huge
    file by its size alone."""
    assert maintenance.read_page(tmp_path / "none.html") is None
    (tmp_path / "ok.html").write_bytes(b"<h1>ok</h1>")
    assert maintenance.read_page(tmp_path / "ok.html") == b"<h1>ok</h1>"
    (tmp_path / "link.html").symlink_to(tmp_path / "ok.html")
    (tmp_path / "folder.html").mkdir()
    os.mkfifo(tmp_path / "fifo.html")  # opening it to read would wait for a writer
    with (tmp_path / "huge.html").open("wb") as f:
        f.truncate(1 << 30)  # 1 GB, sparse: read whole it would take a second and a gigabyte
    refused = {
        "link.html": "is a symbolic link",
        "folder.html": "is not a regular file",
        "fifo.html": "is not a regular file",
        "huge.html": f"is {1 << 30} bytes, over the {LIMIT}",
    }
    for name, reason in refused.items():
        with pytest.raises(MiddockError, match=reason):
            maintenance.read_page(tmp_path / name)


def test_haproxy_loads_a_page_at_the_limit_without_a_warning_and_answers_it_whole(tmp_path: Path):
    """The real HAProxy (the edge's rendered configuration) checks a page at the limit without
    a warning and answers it whole with 503; the page that froze the edge is refused by it."""
    page = tmp_path / "maintenance.html"
    page.write_bytes(b"a" * LIMIT)
    layout = haproxy.Layout(
        tmp_path / "admin.sock",
        tmp_path / "live.map",
        tmp_path / "domains.map",
        tmp_path / "domains.sock",
        tmp_path / "domains-http.sock",
        free_port(),
        None,
    )
    port = free_port()
    shop = haproxy.Frontend("shop", port, False, {"blue": ()}, "blue", page, "d", maintenance=True)
    layout.live_map.write_text(haproxy.render_map(haproxy.live_entries([shop])))
    layout.domains_map.write_text("")
    config = tmp_path / "haproxy.cfg"
    config.write_text(haproxy.render_config([shop], layout))
    checked = subprocess.run(["haproxy", "-c", "-f", str(config)], capture_output=True, text=True)
    assert checked.returncode == 0 and "WARNING" not in checked.stdout + checked.stderr, checked.stderr
    subprocess.run(["haproxy", "-D", "-f", str(config), "-p", str(tmp_path / "pid")], check=True)
    try:
        assert answer(port) == (503, "60", "a" * LIMIT)
    finally:
        os.kill(int((tmp_path / "pid").read_text().split()[0]), signal.SIGTERM)
    page.write_bytes(b"\xef\xbf\xbd" * 6000)  # 6,000 bytes of 0xff decoded with errors="replace"
    checked = subprocess.run(["haproxy", "-c", "-f", str(config)], capture_output=True, text=True)
    assert checked.returncode != 0 and "exceeds the buffer size (18000 > 16384)" in checked.stderr


def test_a_port_or_domain_two_records_claim_stays_with_the_app_that_has_it(tmp_path: Path):
    """A record that claims another app's port or domain, or the edge's own port, is refused for
    that app alone, with one line naming its file."""

    def part(name: str, port: int, domains: list[str], slots: list[str] | None = None) -> routes.Contribution:
        record = routes.AppEdge(domains, {"blue": slots or ["127.0.0.1:20001"]}, "blue")
        return routes.Contribution(App(name, tmp_path), record, port)

    shop, blog = part("shop", 8001, ["shop.test"]), part("blog", 8001, ["shop.test", "blog.test"])
    clashes = routes.port_conflicts([shop, blog], {443: "https-port"}, {8001: "shop"})
    assert list(clashes) == ["blog"] and "blog's port 8001 (" in clashes["blog"] and "is shop's too" in clashes["blog"]
    assert str(tmp_path / ".middock/blog/settings.json") in clashes["blog"]
    assert set(routes.port_conflicts([shop, blog], {}, {})) == {"shop", "blog"}  # neither has it: neither gets it
    assert "the edge's https-port" in routes.port_conflicts([part("x", 443, [])], {443: "https-port"}, {})["x"]
    containers = [shop, part("y", 20001, [], ["127.0.0.1:20002"])]
    assert "loopback port of shop's containers" in routes.port_conflicts(containers, {}, {})["y"]
    assert routes.edge_port_taken([shop], {8001: "http-port"}, {8001: "shop"}) == (
        "the edge's http-port 8001 is shop's port: choose another with: edge:set http-port=N"
    )
    assert routes.edge_port_taken([shop], {8001: "http-port"}, {}) is None  # then the app is refused instead
    in_use = routes.port_conflicts([shop, part("w", 8002, [])], {}, {8001: "shop"}, free=lambda port: False)
    assert list(in_use) == ["w"] and "w's port 8002" in in_use["w"] and "is in use on this server" in in_use["w"]

    kept, lost = routes.domain_conflicts([shop, blog], {"shop.test": "shop"})
    assert [p.record.domains for p in kept] == [["shop.test"], ["blog.test"]]
    assert list(lost) == ["blog"] and "domains:remove blog shop.test" in lost["blog"]
    assert routes.domain_conflicts([part("z", 8003, ["z.test", "z.test"])], {})[1] == {}  # listed twice: still its own


def answer(port: int, host: str | None = None) -> tuple[int, str | None, str]:
    """Status, Retry-After and body of GET / on 127.0.0.1:port."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}/", headers={"Host": host} if host else {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.headers.get("Retry-After"), response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Retry-After"), error.read().decode(errors="replace")


def plant_page(work: Workdir, data: bytes = b"", link: str | None = None) -> None:
    """maintenance.html in the app's work tree: these bytes, or a symlink."""
    path = work.path / maintenance.PAGE
    path.unlink(missing_ok=True)
    if link:
        path.symlink_to(link)
    else:
        path.write_bytes(data)


# What app A's pushes bring as their maintenance page, and the warning its push shows (None: taken).
PAGES: list[tuple[str, Callable[[Workdir], None], str | None]] = [
    ("invalid UTF-8", lambda w: plant_page(w, b"\xff" * 6000), "is not UTF-8 text"),
    ("at the limit", lambda w: plant_page(w, b"b" * LIMIT), None),
    ("one byte over", lambda w: plant_page(w, b"b" * (LIMIT + 1)), f"is {LIMIT + 1} bytes, over the {LIMIT}"),
    ("NUL bytes", lambda w: plant_page(w, b"<h1>\0</h1>"), "holds NUL bytes"),
    ("a symlink", lambda w: plant_page(w, link="/etc/passwd"), "is a symbolic link"),
    ("a huge file", lambda w: plant_page(w, b"c" * (20 << 20)), f"is {20 << 20} bytes"),
]


@ZERO_DROP
@pytest.mark.slow
def test_one_apps_contributions_never_stop_another_apps_push_rollback_or_domains(
    server: Server, work: Workdir, app: str, tmp_path: Path
):
    """App A pushes every kind of maintenance page that could break the shared configuration
    (each but the one at the limit gives A the default page, with one warning), then its records
    claim B's port, a port another program has, B's domain, and a slot that is not an endpoint:
    meanwhile B pushes, rolls back and adds domains under load with 0 failed requests, and only
    A's own changes fail, with one line naming the file. Moving the edge's http-port onto B's
    port is refused, and the edge stays as it was."""
    http_port, _ = server.start_edge("tls=off")
    other = server.create_app("b")
    a_port, b_port = free_port(), free_port()  # not the first free of 8000-8999: another home's test may take it
    server.middock("apps:set", app, "port", str(a_port))
    server.middock("apps:set", other, "port", str(b_port))
    write_web_app(work, "a1")
    deploy(work, "a1")
    b_work = Workdir(tmp_path / "b")
    b_work.git("remote", "add", "production", str(server.repo_path(other)))
    write_web_app(b_work, "b1")
    deploy(b_work, "b1")
    b_versions = ["b1"]
    domains: list[str] = []

    def b_changes(turn: int) -> None:
        """B's push, rollback or domains:add, in turn."""
        if turn % 3 == 0:
            b_versions.append(f"b{len(b_versions) + 1}")
            write_web_app(b_work, b_versions[-1])
            deploy(b_work, b_versions[-1])
        elif turn % 3 == 1:
            assert "is live" in server.middock("rollback", other).stdout
        else:
            domains.append(f"d{turn}.example.test")
            assert domains[-1] in server.middock("domains:add", other, domains[-1]).stdout

    with Load(b_port, slow=0) as load:
        for turn, (name, plant, warning) in enumerate(PAGES):
            plant(work)
            pushed = deploy(work, f"A's page: {name}")
            warnings = [line for line in pushed.splitlines() if "Warning:" in line]
            if warning is None:
                assert not warnings, pushed
                server.middock("maintenance:on", app)
                assert answer(a_port) == (503, "60", "b" * LIMIT), name  # served whole
                server.middock("maintenance:off", app)
            else:
                assert len(warnings) == 1 and warning in warnings[0] and "default page" in warnings[0], pushed
            b_changes(turn)
        assert "is down for maintenance" in maintenance.page_path(App(app, server.home)).read_text()

        a_settings = server.home / ".middock" / app / "settings.json"
        a_record = server.home / ".middock" / app / "edge.json"
        settings, record = a_settings.read_text(), a_record.read_text()
        busy = socket.create_server(("", free_port()))  # a port another program listens on
        planted = [  # A's change that meets it: its deploy, or its quickest change of the edge
            (a_settings, json.dumps({**json.loads(settings), "port": b_port}), "is b-", "deploy"),
            (
                a_settings,
                json.dumps({**json.loads(settings), "port": busy.getsockname()[1]}),
                "in use",
                "maintenance:on",
            ),
            (
                a_record,
                json.dumps({**json.loads(record), "domains": [domains[0]]}),
                "is a domain of b-",
                "maintenance:on",
            ),
            (
                a_record,
                '{"slots": {"blue": ["127.0.0.1:1\\n  server x 10.0.0.1:80"]}}',
                "not a valid record",
                "maintenance:on",
            ),
        ]
        for turn, (path, text, reason, command) in enumerate(planted, len(PAGES)):
            path.write_text(text)
            b_changes(turn)
            failed = server.middock(command, app, check=False)
            errors = [line for line in failed.stderr.splitlines() if line.strip()]
            assert failed.returncode != 0 and len(errors) == 1, failed.stdout + failed.stderr
            assert reason in errors[0] and str(path) in errors[0], errors
            path.write_text(settings if path == a_settings else record)
        busy.close()
        moved = server.middock("edge:set", f"http-port={b_port}", check=False)  # the edge's own change is refused
        assert moved.returncode == 1 and moved.stderr.count("\n") == 1 and f"is {other}'s port" in moved.stderr
    report = load.report
    assert not report.failures and report.total > 100, report.summary()

    assert answer(b_port)[0] == 200
    assert json.loads(server.middock("edge", "--json").stdout)["settings"]["http-port"] == http_port
    assert answer(http_port, domains[-1])[0] == 200  # through Caddy, by B's last domain
    server.middock("maintenance:on", app)  # A's records are its own again: the edge serves it
    assert answer(a_port)[:2] == (503, "60") and "is down for maintenance" in answer(a_port)[2]
    server.middock("maintenance:off", app)
    assert answer(a_port) == (200, None, "a1\n")
