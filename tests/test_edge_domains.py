"""The path users take: a domain, through Caddy, then HAProxy, then the release. Under load on it,
over HTTPS (a pebble certificate, verified) and over plain HTTP, kept-alive and not, the first
deploy that starts an app's second slot, a push, a rollback, and another app's `domains:add`
and `domains:remove` fail no request; and `edge:set` does what it says, end to end.

Caddy keeps its clients' connections, and its own to HAProxy, open between requests. A change
that breaks a kept connection fails only its next request, and back-to-back clients reuse the
busiest connections, so each load also has idle clients: their connections (and the extra ones
Caddy opened to HAProxy for them) stay unused across the change and send again right after it
(`Load.burst`). The first deploy to a second slot runs under a quiet load (see DomainLoad): the
traffic of most sites, with which connections that a reload of HAProxy left behind outlive the
switch.
"""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import time
from collections.abc import Iterator

import pytest
from support.apps import write_web_app
from support.edge import DOMAIN, Site, assert_clean_switch, caddy_local_root, deploy
from support.groups import ZERO_DROP
from support.load import Load
from support.middock import Server, Workdir
from support.ports import free_port

OTHER_DOMAIN = "blog.example.test"

BRIEF_CGI = """#!/bin/sh
sleep 0.3
body="brief $(cat /www/index.html)"
printf 'Content-Type: text/plain\\r\\nContent-Length: %d\\r\\n\\r\\n%s\\n' $((${#body} + 1)) "$body"
"""


def write_app(work: Workdir, version: str) -> None:
    """The edge tests' app, plus /cgi-bin/brief (0.3 s): a burst of idle clients asking for it
    is surely in flight at once, so Caddy opens one connection to HAProxy for each of them, and
    keeps them (the answer has a length, so HAProxy keeps Caddy's connection open after it)."""
    write_web_app(work, version)
    work.write("www/cgi-bin/brief", BRIEF_CGI, executable=True)


def start_site(server: Server, request: pytest.FixtureRequest, tls: str) -> Site:
    """The edge on free ports: with certificates from pebble (`acme`), or plain HTTP (`off`)."""
    if tls == "off":
        return Site(*server.start_edge("tls=off"), None)
    acme = request.getfixturevalue("pebble")
    ports = server.start_edge(f"acme-ca={acme.directory}", f"acme-ca-root={acme.ca}", "acme-email=ops@example.org")
    return Site(*ports, ssl.create_default_context(cadata=acme.root()))


def push(work: Workdir, site: Site, version: str) -> None:
    write_app(work, version)
    work.commit(version)
    result = work.push()
    assert f"is live at {site.url()}" in result.stderr, result.stderr


class DomainLoad:
    """Clients of the domain: 2 of slow requests (a new connection each) and 12 idle ones, and
    when `busy` the edge tests' steady clients too (3 keep-alive, 3 with a new connection per
    request); with TLS, clients of the HTTP port as well, whose answers must all be the redirect
    to the domain's HTTPS URL (never counted as pages).

    A quiet load is what exposes connections that Caddy keeps to HAProxy across a reload of
    HAProxy: Caddy reuses its most recently used idle connection first, and HAProxy's old worker
    closes each of its connections after one more answer, so steady clients use up every
    connection to the old worker within milliseconds of the reload, before the switch. With
    little traffic, as most sites have, they are still there after it."""

    def __init__(self, site: Site, busy: bool = True) -> None:
        self.site, self.busy = site, busy
        steady = 3 if busy else 0
        pages = {"keepalive": steady, "fresh": steady, "slow": 2, "idle": 12, "idle_path": "/cgi-bin/brief"}
        self.pages = Load(site.port, host=DOMAIN, tls=site.tls, max_seconds=300, **pages)
        self.redirects = (
            Load(site.http_port, host=DOMAIN, keepalive=1, fresh=1, slow=0, idle=2, redirects=True, max_seconds=300)
            if site.tls
            else None
        )
        self.loads = [load for load in (self.pages, self.redirects) if load]
        self.changed = 0.0  # when the change had returned

    def burst(self) -> None:
        for load in self.loads:
            load.burst()

    def check(self, old: str, new: str) -> None:
        """No request failed; a switch under a busy load is clean (see assert_clean_switch);
        every request sent after the change returned was answered by `new`; every redirect
        went to the domain's HTTPS URL."""
        report, failed = self.pages.report, []
        with case(failed, "pages"):
            if old != new and self.busy:
                assert_clean_switch(report, old, new)
            assert not report.failures and {old, new} <= report.versions(), report.summary()
            late = {a.version for a in report.answers if a.sent > self.changed}
            assert late == {new}, f"answered after the change: {sorted(late)}; {report.summary()}"
        if self.redirects:
            with case(failed, "redirects"):
                redirects = self.redirects.report
                assert not redirects.failures, redirects.summary()
                assert redirects.versions() == {f"308 {self.site.url()}"}, redirects.summary()
        assert not failed, " / ".join(failed)


@contextlib.contextmanager
def load_on_domain(site: Site, busy: bool = True) -> Iterator[DomainLoad]:
    """About a second of load and a burst of the idle clients; the change (the body); a burst
    right after it, another a second later."""
    load = DomainLoad(site, busy)
    with contextlib.ExitStack() as stack:
        for each in load.loads:
            stack.enter_context(each)
        time.sleep(0.5)
        load.burst()
        time.sleep(0.5)
        yield load
        load.changed = time.monotonic()
        load.burst()
        time.sleep(1)
        load.burst()


@contextlib.contextmanager
def case(problems: list[str], name: str) -> Iterator[None]:
    """The checks of one case: a failed one is noted and the next cases still run, so one run
    says every case that fails."""
    try:
        yield
    except AssertionError as error:
        problems.append(f"{name}: {str(error).splitlines()[0]}")


@ZERO_DROP
@pytest.mark.slow
@pytest.mark.parametrize("tls", ["acme", "off"])
def test_the_domain_path_drops_no_request(server, work, app, tmp_path, request, tls):
    site = start_site(server, request, tls)
    server.middock("domains:add", app, DOMAIN)
    push(work, site, "v1")
    site.wait_for(DOMAIN, "v1")
    problems: list[str] = []

    other = server.create_app("other")
    other_work = Workdir(tmp_path / "other-work")
    other_work.git("remote", "add", "production", str(server.repo_path(other)))
    with load_on_domain(site) as load:
        write_web_app(other_work, "o1")
        deploy(other_work, "o1")  # a new app behind the edge (HAProxy reloads for it today)
    with case(problems, "another app's first deploy"):
        load.check("v1", "v1")

    with load_on_domain(site, busy=False) as load:
        push(work, site, "v2")  # the app's first blue/green switch: its second slot starts
    with case(problems, "first deploy to the second slot (v1 -> v2), quiet load"):
        load.check("v1", "v2")

    with load_on_domain(site) as load:
        push(work, site, "v3")
    with case(problems, "push (v2 -> v3)"):
        load.check("v2", "v3")

    with load_on_domain(site) as load:
        rollback = server.middock("rollback", app)
    assert "is live" in rollback.stdout, rollback.stdout
    with case(problems, "rollback (v3 -> v2)"):
        load.check("v3", "v2")

    other_served: object = None
    with load_on_domain(site) as load:
        server.middock("domains:add", other, OTHER_DOMAIN)
        load.burst()  # the idle connections, across the add
        with case(problems, f"the other app at {OTHER_DOMAIN} after domains:add"):
            site.wait_for(OTHER_DOMAIN, "o1")
        time.sleep(0.5)
        server.middock("domains:remove", other, OTHER_DOMAIN)
        with contextlib.suppress(OSError):
            other_served = site.ask(OTHER_DOMAIN)
    with case(problems, "domains:add and domains:remove of another app"):
        load.check("v2", "v2")
    with case(problems, f"the other app at {OTHER_DOMAIN} after domains:remove"):
        assert not (isinstance(other_served, tuple) and other_served[:2] == (200, "o1")), other_served

    assert not problems, "\n".join(problems)


def edge_json(server: Server) -> dict:
    return json.loads(server.middock("edge", "--json").stdout)


def refuses(port: int, timeout: float = 15) -> bool:
    """Whether nothing listens on the port (within `timeout`: an old listener may be closing)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except ConnectionRefusedError:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)


def test_edge_set_moves_the_edge_and_changes_its_tls_end_to_end(server, work, app, pebble):  # noqa: F811
    http_port, https_port = server.start_edge(
        f"acme-ca={pebble.directory}", f"acme-ca-root={pebble.ca}", "acme-email=ops@example.org"
    )
    acme = Site(http_port, https_port, ssl.create_default_context(cadata=pebble.root()))
    server.middock("domains:add", app, DOMAIN)
    push(work, acme, "v1")
    acme.wait_for(DOMAIN, "v1")
    before = edge_json(server)["settings"]

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    busy = taken.getsockname()[1]
    unused = free_port()
    for assignments in (
        ["tls=bogus"],
        ["http-port=0"],
        ["https-port=65536"],
        ["http-port=eighty"],
        ["colour=blue"],
        ["http-port"],
        ["acme-ca=http://127.0.0.1/dir"],
        ["acme-email=nobody"],
        ["acme-ca-root=relative/ca.pem"],
        [f"https-port={http_port}"],
        [f"http-port={unused}", f"https-port={unused}"],
        [f"http-port={unused}", "tls=bogus"],  # the good one is not kept either
    ):
        refused = server.middock("edge:set", *assignments, check=False)
        lines = refused.stderr.strip().splitlines()
        assert refused.returncode == 1 and len(lines) == 1 and not refused.stdout.strip(), (assignments, refused)
    assert edge_json(server)["settings"] == before
    assert acme.ask(DOMAIN)[:2] == (200, "v1")

    moved = Site(free_port(), free_port(), acme.tls)
    server.middock("edge:set", f"http-port={moved.http_port}", f"https-port={moved.https_port}")
    moved.wait_for(DOMAIN, "v1")
    assert moved.ask(DOMAIN, "/x?y=1", port=moved.http_port) == (
        308,
        "",
        f"https://{DOMAIN}:{moved.https_port}/x?y=1",
    )
    assert refuses(http_port) and refuses(https_port)
    assert edge_json(server)["routes"][0]["urls"] == [moved.url()]

    plain = Site(moved.http_port, moved.https_port, None)
    server.middock("edge:set", "tls=off")
    plain.wait_for(DOMAIN, "v1")  # a page, not a redirect
    assert plain.ask(DOMAIN)[2] is None
    assert refuses(moved.https_port)
    assert edge_json(server)["routes"][0]["urls"] == [plain.url()]

    server.middock("edge:set", "tls=internal")
    internal = Site(moved.http_port, moved.https_port, ssl.create_default_context(cafile=str(caddy_local_root(server))))
    internal.wait_for(DOMAIN, "v1")
    assert internal.ask(DOMAIN, port=moved.http_port)[0] == 308
    with pytest.raises(ssl.SSLError):
        moved.ask(DOMAIN)  # pebble's root does not vouch for it: Caddy's own CA signed it

    server.middock("edge:set", "tls=acme")
    moved.wait_for(DOMAIN, "v1")

    with taken:  # a port another program holds is refused too, and nothing changes
        held = server.middock("edge:set", f"https-port={busy}", check=False)
        settings = edge_json(server)["settings"]
        moved_back = moved.ask(DOMAIN)[:2]
    assert held.returncode == 1 and len(held.stderr.strip().splitlines()) == 1, held
    assert settings["https-port"] == moved.https_port, (held.stderr, settings)
    assert moved_back == (200, "v1")
