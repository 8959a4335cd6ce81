"""The dashboard as its users reach it: a one-time link from `ssh deploy@… dashboard`, an SSH
tunnel through a real sshd with the key's own `permitopen`, the pages in Debian's Chromium
(headless, driven by Playwright), and install.sh's deploy user on its rootless Docker daemon.

Screenshots of each page are kept in `test-artifacts/dashboard/`.
"""

from __future__ import annotations

import http.client
import json
import pwd
import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from support.middock import ROOT, Workdir
from support.ports import free_port
from support.ssh_server import SshClient, as_user
from support.waiting import wait_for
from support.web import http_get

pytestmark = pytest.mark.xdist_group("default-ports")  # the session's `deployment` (conftest.py)

EXAMPLE = ROOT / "examples" / "hello"
ARTIFACTS = ROOT / "test-artifacts" / "dashboard"
CHROMIUM = "/usr/bin/chromium"
LINK = re.compile(r"http://127\.0\.0\.1:(\d+)(/login/[A-Za-z0-9_-]+)")
SECRET = f"s3cret-{uuid.uuid4().hex}"


@dataclass
class Site:
    """The example app behind the edge, its dashboard's port on the server and a tunnel's end here."""

    app: str
    port: int
    work: Workdir
    dashboard_port: int
    local_port: int


def link_path(client: SshClient) -> str:
    """The path of a one-time link from `ssh … dashboard` (`/login/TOKEN`)."""
    return link(client, 0).split(":0", 1)[1]


def link(client: SshClient, local_port: int) -> str:
    """A one-time link from `ssh … dashboard`, pointed at the tunnel's end."""
    given = client.run("dashboard")
    assert given.returncode == 0, given.stdout + given.stderr
    found = LINK.search(given.stdout)
    assert found, given.stdout
    assert f"ssh -N -L {found[1]}:127.0.0.1:{found[1]} " in given.stdout
    return f"http://127.0.0.1:{local_port}{found[2]}"


def tunnel(client: SshClient, local_port: int, remote: str, *options: str) -> subprocess.Popen:
    return subprocess.Popen(
        [*client.argv(options=("-N", "-L", f"{local_port}:{remote}", "-o", "ExitOnForwardFailure=yes", *options))],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def request(port: int, method: str, path: str, headers: dict | None = None, body: str = "") -> tuple[int, dict, str]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request(method, path, body=body.encode() or None, headers=headers or {})
    answer = connection.getresponse()
    text = answer.read().decode(errors="replace")
    connection.close()
    return answer.status, {k.lower(): v for k, v in answer.getheaders()}, text


@pytest.fixture(scope="module")
def site(deployment, tmp_path_factory) -> Iterator[Site]:
    dashboard_port, local_port = free_port(), free_port()
    deployment.root_middock("edge:set", f"dashboard-port={dashboard_port}")
    deployment.root_middock("dashboard:install")  # the keys may now forward that port
    app, port = deployment.new_app(), free_port()
    assert deployment.alice.run("apps:set", app, "port", str(port)).returncode == 0
    assert deployment.alice.run("config:set", app, f"DASHBOARD_SECRET={SECRET}", "--no-deploy").returncode == 0
    work, pushed = deployment.push_example(app, tmp_path_factory.mktemp("work") / "hello")
    assert pushed.returncode == 0, pushed.stderr
    link(deployment.alice, local_port)  # no systemd here: the first link starts the dashboard
    forward = tunnel(deployment.alice, local_port, f"127.0.0.1:{dashboard_port}")
    try:
        wait_for(lambda: probe(local_port) is not None, timeout=30, what="the tunnel's end")
        assert request(local_port, "GET", "/")[0] == 401
        yield Site(app, port, work, dashboard_port, local_port)
    finally:
        forward.terminate()
        forward.wait(timeout=10)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            yield chromium
        finally:
            chromium.close()


def with_sessions(deployment, expression: str) -> str:
    """What `expression` gives, evaluated by the deploy user's middock with its home's sessions
    (`s`: dashboard/sessions.py, `home`): a link or token made the server's own way."""
    python = str(Path(deployment.middock).with_name("python3"))
    code = "import time, pathlib; from middock_receiver.dashboard import sessions as s; "
    code += f"home = pathlib.Path({pwd.getpwnam(deployment.user).pw_dir!r}); print({expression})"
    return as_user(deployment.user, python, "-c", code).stdout.strip()


def logged_in(browser, deployment, site: Site):
    page = browser.new_context().new_page()
    page.goto(link(deployment.alice, site.local_port))
    page.wait_for_url(f"http://127.0.0.1:{site.local_port}/")
    return page


def test_a_link_logs_in_and_the_apps_page_shows_the_live_example(browser, deployment, site):
    page = logged_in(browser, deployment, site)
    row = page.locator(f'tr[data-app="{site.app}"]')
    assert row.locator('[data-field="state"]').inner_text() == "live"
    assert row.locator('[data-field="live"]').inner_text().startswith("v1 ")
    assert "by alice" in row.locator('[data-field="last"]').inner_text()
    assert "running" in row.locator('[data-field="health"]').inner_text()
    assert f":{site.port}/" in row.inner_text()
    cookies = page.context.cookies()
    assert [(c["name"], c["httpOnly"], c["sameSite"]) for c in cookies] == [("middock_session", True, "Strict")]
    page.screenshot(path=str(ARTIFACTS / "apps.png"), full_page=True)


def test_a_push_streams_into_the_open_page_then_rollback_maintenance_and_logs(browser, deployment, site):
    page = logged_in(browser, deployment, site)
    apps = page.context.new_page()
    apps.goto(f"http://127.0.0.1:{site.local_port}/")
    page.goto(f"http://127.0.0.1:{site.local_port}/apps/{site.app}")
    go = Path(f"/tmp/middock-go-{uuid.uuid4().hex[:8]}")
    site.work.write(
        "docker/build-9-wait.sh",
        f"#!/bin/sh\necho waiting for the browser\nwhile [ ! -e {go} ]; do sleep 0.1; done\n",
        True,
    )
    site.work.write("middock.env", (EXAMPLE / "middock.env").read_text().replace("Hello from middock", "Hello again"))
    site.work.commit("say hello again")
    push = site.work.start_push()
    try:
        page.locator("#deploy-output").get_by_text("waiting for the browser").wait_for(timeout=120_000)
        assert push.poll() is None, "the line reached the page only once the push had returned"
        page.screenshot(path=str(ARTIFACTS / "deploy-streaming.png"), full_page=True)
        state = apps.locator(f'tr[data-app="{site.app}"] [data-field="state"]')
        state.filter(has_text="deploying").wait_for(timeout=30_000)  # the apps page, updated by itself
        apps.screenshot(path=str(ARTIFACTS / "apps-deploying.png"), full_page=True)
    finally:
        go.touch()
        _, errors = push.communicate(timeout=600)
        go.unlink()
    assert push.returncode == 0, errors
    assert "Hello again" in http_get(site.port)
    top = page.locator('#releases tr[data-release="2"]')
    shown(page, '#releases tr[data-release="2"] .result:has-text("live")')  # the page reloads itself once it is
    assert page.locator("#releases tbody tr").first.get_attribute("data-release") == "2"
    assert top.locator(".subject").inner_text() == "say hello again" and top.locator(".pusher").inner_text() == "alice"
    state.filter(has_text="live").wait_for(timeout=60_000)
    assert apps.locator(f'tr[data-app="{site.app}"] [data-field="live"]').inner_text().startswith("v2 ")
    page.reload()
    memory = page.locator('#containers [data-field="memory"]').first
    wait_for(lambda: memory.inner_text() != "…", timeout=30, what="the containers' CPU and memory")
    measured = bool(re.fullmatch(r"[\d.]+ (B|KiB|MiB|GiB)", memory.inner_text()))
    assert measured or "not measured by this Docker engine" in page.locator("#stats-note").inner_text()
    page.screenshot(path=str(ARTIFACTS / "app.png"), full_page=True)

    page.on("dialog", lambda dialog: dialog.accept())
    page.locator('#releases tr[data-release="1"] button.rollback').click()
    shown(page, "h1.done", 120)
    assert "rollback" in page.locator("h1.done").inner_text()
    assert "Hello from middock" in http_get(site.port)
    page.screenshot(path=str(ARTIFACTS / "rollback-done.png"), full_page=True)
    releases = json.loads(deployment.alice.run("releases", site.app, "--json").stdout)
    assert releases[-1]["kind"] == "rollback to 1" and releases[-1]["pusher"] == "alice"
    audit = deployment.root_middock("audit", site.app).stdout
    assert re.search(r"alice \(SHA256:\S+\)\s+rollback\s+" + site.app, audit), audit

    page.goto(f"http://127.0.0.1:{site.local_port}/apps/{site.app}")
    assert "rollback to 1)" in page.locator("#live").inner_text()
    page.locator("#maintenance").click()
    shown(page, "h1.done")
    assert maintenance_status(site.port) == 503
    page.locator("#back").click()
    assert page.locator("#maintenance-state").inner_text() == "on"
    page.locator("#maintenance").click()
    shown(page, "h1.done")
    assert maintenance_status(site.port) == 200

    page.goto(f"http://127.0.0.1:{site.local_port}/apps/{site.app}/logs")
    marker = f"/followed-{uuid.uuid4().hex[:8]}"
    deadline = time.monotonic() + 60
    while marker not in page.locator("#logs").inner_text() and time.monotonic() < deadline:
        try_get(site.port, marker)
        page.wait_for_timeout(500)
    assert marker in page.locator("#logs").inner_text()
    page.screenshot(path=str(ARTIFACTS / "logs.png"), full_page=True)
    page.goto(f"http://127.0.0.1:{site.local_port}/apps/{site.app}/releases/2")
    assert "waiting for the browser" in page.locator("#output").inner_text()
    page.screenshot(path=str(ARTIFACTS / "release.png"), full_page=True)


def shown(page, selector: str, timeout: float = 60) -> None:
    """Wait until `selector` is on the page; else fail saying where the page is and what it shows."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.locator(selector).first.wait_for(timeout=timeout * 1000)
    except PlaywrightTimeout:
        raise AssertionError(f"no {selector} at {page.url} after {timeout} s:\n{page.inner_text('body')}") from None


def try_get(port: int, path: str) -> None:
    try:
        request(port, "GET", path)
    except OSError:
        pass


def maintenance_status(port: int) -> int:
    return request(port, "GET", "/")[0]


def test_what_a_push_wrote_is_shown_as_text(browser, deployment, site):
    site.work.write("docker/build-8-shout.sh", "#!/bin/sh\necho '<img src=x onerror=\"document.title=1\">'\n", True)
    site.work.git("rm", "-q", "--cached", "docker/build-9-wait.sh", check=False)
    (site.work.path / "docker" / "build-9-wait.sh").unlink(missing_ok=True)
    site.work.commit("<script>document.title='owned'</script>")
    pushed = site.work.push()
    assert pushed.returncode == 0, pushed.stderr
    page = logged_in(browser, deployment, site)
    page.goto(f"http://127.0.0.1:{site.local_port}/apps/{site.app}")
    assert "<script>document.title='owned'</script>" in page.locator("#releases tbody tr").first.inner_text()
    number = json.loads(deployment.alice.run("releases", site.app, "--json").stdout)[-1]["number"]
    page.goto(f"http://127.0.0.1:{site.local_port}/apps/{site.app}/releases/{number}")
    assert '<img src=x onerror="document.title=1">' in page.locator("#output").inner_text()
    assert page.evaluate("document.querySelectorAll('img').length") == 0
    assert page.title().startswith("middock")
    page.screenshot(path=str(ARTIFACTS / "escaped.png"), full_page=True)


def session_cookie(deployment, site: Site) -> str:
    status, headers, _ = request(site.local_port, "GET", link_path(deployment.alice))
    assert status == 200
    return headers["set-cookie"].split(";")[0]


def test_a_link_works_once_and_the_cookie_has_its_flags(deployment, site):
    path = link_path(deployment.alice)
    status, headers, body = request(site.local_port, "GET", path)
    assert status == 200 and 'http-equiv="refresh" content="0; url=/"' in body
    flags = [part.strip().lower() for part in headers["set-cookie"].split(";")]
    assert {"httponly", "samesite=strict", "path=/", f"max-age={12 * 3600}"} <= set(flags)
    assert "secure" not in flags  # plain HTTP through the tunnel; Caddy's HTTPS would add it
    assert headers["content-security-policy"].startswith("default-src 'self'")
    assert headers["x-frame-options"] == "DENY" and headers["referrer-policy"] == "same-origin"
    again, _, body = request(site.local_port, "GET", path)
    assert again == 403 and "cannot be used" in body
    expired = with_sessions(deployment, "s.issue_link(home, 'alice', now=time.time() - 121)")
    status, _, body = request(site.local_port, "GET", f"/login/{expired}")
    assert status == 403 and "cannot be used" in body
    _, over_https, _ = request(
        site.local_port, "GET", link_path(deployment.alice),
        {"X-Forwarded-Proto": "https"},
    )  # fmt: skip
    assert "secure" in [part.strip().lower() for part in over_https["set-cookie"].split(";")]


def test_an_action_without_the_token_or_from_another_origin_changes_nothing(deployment, site):
    cookie = session_cookie(deployment, site)
    status, _, page = request(site.local_port, "GET", f"/apps/{site.app}", {"Cookie": cookie})
    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', page)[1]
    own = f"http://127.0.0.1:{site.local_port}"
    form = {"Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded"}
    before = len(json.loads(deployment.alice.run("releases", site.app, "--json").stdout))
    for headers, body in (
        ({**form, "Origin": own}, "release=1"),
        ({**form, "Origin": "http://evil.example"}, f"csrf={csrf}&release=1"),
        (form, f"csrf={csrf}&release=1"),
        ({**form, "Origin": own}, "csrf=0000&release=1"),
    ):
        status, _, answer = request(site.local_port, "POST", f"/apps/{site.app}/rollback", headers, body)
        assert status == 403 and "refused" in answer
        status, _, _ = request(site.local_port, "POST", f"/apps/{site.app}/maintenance-on", headers, body)
        assert status == 403
    assert len(json.loads(deployment.alice.run("releases", site.app, "--json").stdout)) == before
    assert maintenance_status(site.port) == 200


def test_a_jobs_last_run_and_its_output_are_on_the_apps_page_for_an_admin(deployment, site):
    ran = deployment.alice.run("cron:run", site.app, "greet")
    assert ran.returncode == 0, ran.stderr
    cookie = session_cookie(deployment, site)
    _, _, body = request(site.local_port, "GET", f"/apps/{site.app}", {"Cookie": cookie})
    assert "#1 " in body and "succeeded" in body and "from the hourly job" in body


def test_no_config_value_reaches_the_browser(deployment, site):
    cookie = session_cookie(deployment, site)
    for path in ("/", f"/apps/{site.app}", f"/apps/{site.app}/releases/1", f"/apps/{site.app}/logs"):
        status, _, body = request(site.local_port, "GET", path, {"Cookie": cookie})
        assert status == 200 and SECRET not in body
        if path == f"/apps/{site.app}":
            assert "DASHBOARD_SECRET" in body


def test_a_read_key_sees_only_its_apps_and_may_not_act(browser, deployment, site):
    other = deployment.new_app()
    rita = deployment.key(f"rita-{uuid.uuid4().hex[:6]}", "--role", "read", "--apps", site.app)
    page = browser.new_context().new_page()
    page.goto(link(rita, site.local_port))
    page.wait_for_url(f"http://127.0.0.1:{site.local_port}/")
    assert page.locator("tr[data-app]").evaluate_all("rows => rows.map(row => row.dataset.app)") == [site.app]
    page.goto(f"http://127.0.0.1:{site.local_port}/apps/{other}")
    assert "not found" in page.inner_text("body")
    page.goto(f"http://127.0.0.1:{site.local_port}/apps/{site.app}")
    assert page.locator("button.rollback").count() == 0 and page.locator("#maintenance").count() == 0
    cookie = next(c for c in page.context.cookies() if c["name"] == "middock_session")["value"]
    _, _, body = request(site.local_port, "GET", f"/apps/{site.app}", {"Cookie": f"middock_session={cookie}"})
    assert 'name="csrf"' not in body  # no form to send
    # a form forged with the session's right token (made with the home's own secret) is still refused
    token = with_sessions(deployment, f"s.csrf_token(home, {cookie!r})")
    own = f"http://127.0.0.1:{site.local_port}"
    form = {"Cookie": f"middock_session={cookie}", "Origin": own, "Content-Type": "application/x-www-form-urlencoded"}
    status, _, answer = request(site.local_port, "POST", f"/apps/{site.app}/restart", form, f"csrf={token}")
    assert status == 409 and "needs deploy" in answer, answer


def test_logout_all_ends_every_session(deployment, site):
    cookie = session_cookie(deployment, site)
    assert request(site.local_port, "GET", "/", {"Cookie": cookie})[0] == 200
    deployment.alice.run("dashboard:logout-all")
    assert request(site.local_port, "GET", "/", {"Cookie": cookie})[0] == 401


def test_unknown_addresses_are_404_pages_and_no_session_no_page(deployment, site):
    cookie = session_cookie(deployment, site)
    for path in ("/apps/nope", f"/apps/{site.app}/releases/999", "/apps/..%2f..%2fetc", "/no/such/page"):
        status, headers, body = request(site.local_port, "GET", path, {"Cookie": cookie})
        assert status == 404 and "Traceback" not in body and headers["content-type"].startswith("text/html")
    status, _, body = request(site.local_port, "GET", f"/apps/{site.app}")
    assert status == 401 and "dashboard" in body and "ssh " in body


def test_a_key_may_tunnel_to_the_dashboard_only(deployment, site):
    """permitopen lets `ssh -L` reach the dashboard's port and no other; install.sh's sshd setting
    refuses remote forwarding."""
    other, local = free_port(), free_port()
    elsewhere = tunnel(deployment.alice, local, f"127.0.0.1:{deployment.sshd.port}")
    try:
        wait_for(lambda: probe(local) is not None, timeout=20, what="the refused tunnel's end")
        assert probe(local) == b""  # sshd refuses the channel: the connection closes, no banner
    finally:
        elsewhere.terminate()
        elsewhere.wait(timeout=10)
    remote = subprocess.run(
        deployment.alice.argv(options=("-N", "-R", f"{other}:127.0.0.1:22", "-o", "ExitOnForwardFailure=yes")),
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )
    assert remote.returncode != 0 and "forwarding failed" in remote.stderr.lower(), remote.stderr


def probe(port: int) -> bytes | None:
    """What a connection to the port gets in its first second (None: nothing listens)."""
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as connection:
            connection.settimeout(1)
            try:
                return connection.recv(100)
            except TimeoutError:
                return b"?"
    except OSError:
        return None
