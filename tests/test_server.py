"""The README's Quickstart, literally, on a real Debian 12 server with systemd as PID 1 (tests/support/server_bed.py).

Root installs middock from its home and runs the root-only commands; a separate user (the laptop) pushes over
the server's sshd; systemd runs Docker and the edge; the server reboots and loses power. One bed for the module,
its tests in order: what one test sets up, the next uses. Every request is made inside the bed.

Times (install, pushes, seconds from a boot to the page) are printed with the prefix `[server-bed]`
(pytest -s shows them).
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator

import pytest
from support.server_bed import (
    EDGE_UNITS,
    LAPTOP,
    UNITS,
    ServerBed,
    add_laptop,
    copy_middock,
    create_hello,
    install,
    live_url,
    not_owned_by,
    over_ssh,
    page,
    page_soon,
    push,
    push_greeting,
    running,
)

pytestmark = [pytest.mark.bed, pytest.mark.xdist_group("server-bed")]

DOMAIN = "hello.example.test"
APP_PORT_URL = "http://localhost:{port}/"


def report(text: str) -> None:
    print(f"[server-bed] {text}", flush=True)


@pytest.fixture(scope="module")
def bed() -> Iterator[ServerBed]:
    started = time.monotonic()
    with ServerBed() as server:
        report(f"image ready and server booted in {time.monotonic() - started:.1f} s")
        add_laptop(server)
        copy_middock(server)
        yield server


@pytest.fixture(scope="module")
def state() -> dict:
    """What one test learns for the next (the app's port, the pushes so far)."""
    return {"pushes": 0}


def root(bed: ServerBed, *argv: str, **options) -> subprocess.CompletedProcess:
    """A command of root's, in root's home, as the README's server-side commands are run."""
    return bed.exec(*argv, cwd="/root", **options)


def page_by_domain(bed: ServerBed, scheme: str, *curl_options: str) -> str:
    """The page through Caddy on port 80 or 443, with the app's domain as Host (and SNI)."""
    port = 443 if scheme == "https" else 80
    return page(bed, f"{scheme}://{DOMAIN}/", "--resolve", f"{DOMAIN}:{port}:127.0.0.1", *curl_options)


def push_next_greeting(bed: ServerBed, state: dict) -> tuple[str, float]:
    """Commit and push the next greeting (`push N`); returns it and the push's seconds."""
    state["pushes"] += 1
    greeting = f"Hello from middock, push {state['pushes']}"
    return greeting, push_greeting(bed, greeting)


def app_url(state: dict) -> str:
    return APP_PORT_URL.format(port=state["port"])


@pytest.mark.slow
def test_install_as_root_from_its_home(bed: ServerBed) -> None:
    started = time.monotonic()
    installed = install(bed)
    report(f"install.sh: {time.monotonic() - started:.1f} s, exit {installed.returncode}")
    assert installed.returncode == 0, installed.stdout + installed.stderr
    assert "middock is installed" in installed.stdout
    enabled = root(bed, "systemctl", "is-enabled", "docker.service", *UNITS, "cron.service", check=False)
    assert enabled.stdout.split() == ["enabled"] * 5, enabled.stdout + enabled.stderr
    assert "docker" not in root(bed, "id", "-nG", "deploy").stdout.split()  # a deploy key is not root


def test_first_push_is_live_where_it_says(bed: ServerBed, state: dict) -> None:
    create_hello(bed)
    started = time.monotonic()
    pushed = push(bed)
    report(f"first push: {time.monotonic() - started:.1f} s, exit {pushed.returncode}")
    assert pushed.returncode == 0, pushed.stderr
    url = live_url(pushed.stderr)
    assert url, pushed.stderr
    state["port"] = int(re.search(r":(\d+)/$", url).group(1))
    assert "Hello from middock" in page(bed, url)
    assert "Hello from middock" in page(bed, app_url(state))
    table = root(bed, "crontab", "-l", "-u", "deploy").stdout  # the example's hourly job, for systemd's cron
    assert "cron:run hello greet --scheduled" in table and "# middock /home/deploy hello: begin" in table, table
    job = over_ssh(bed, "cron:run", "hello", "greet")
    assert job.stdout == "Hello from middock from the hourly job\n", job.stdout + job.stderr


@pytest.mark.slow
def test_domain_over_https_with_the_local_ca_and_over_http(bed: ServerBed, state: dict) -> None:
    over_ssh(bed, "domains:add", "hello", DOMAIN)
    # No ACME CA is reachable from here: Caddy's own CA, then no TLS.
    root(bed, "middock", "edge:set", "tls=internal")
    found = root(bed, "find", "/home/deploy/.middock/_edge", "-path", "*/authorities/local/root.crt").stdout.split()
    https = "failed: Caddy's local CA (pki/authorities/local/root.crt) is not under ~deploy/.middock/_edge"
    if found:
        # The laptop trusts that CA (it cannot read the deploy user's home).
        bed.exec("tee", "caddy-root.crt", user=LAPTOP, input=root(bed, "cat", found[0]).stdout)
        https = page_soon(lambda: page_by_domain(bed, "https", "--cacert", "caddy-root.crt"))
    # The later tests go through the domain over HTTP, whatever became of HTTPS.
    root(bed, "middock", "edge:set", "tls=off")
    http = page_soon(lambda: page_by_domain(bed, "http"))
    assert "Hello from middock" in https, f"https://{DOMAIN}/ with tls=internal: {https}"
    assert "Hello from middock" in http, f"http://{DOMAIN}/ with tls=off: {http}"


def test_root_keys_add_list_remove(bed: ServerBed) -> None:
    bed.exec("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "ci@example", "-f", ".ssh/ci", user=LAPTOP)
    root(bed, "tee", "ci.pub", input=bed.exec("cat", ".ssh/ci.pub", user=LAPTOP).stdout)
    as_ci = ("ssh", "-i", ".ssh/ci", "-o", "IdentitiesOnly=yes", "deploy@localhost", "apps")
    assert bed.exec(*as_ci, user=LAPTOP, check=False).returncode != 0
    root(bed, "middock", "keys:add", "ci", "ci.pub")
    assert "ci" in [key["name"] for key in json.loads(root(bed, "middock", "keys:list", "--json").stdout)]
    listed = root(bed, "middock", "keys:list").stdout
    assert "laptop@laptop" in listed and "ci" in listed, listed
    assert "hello" in bed.exec(*as_ci, user=LAPTOP).stdout
    root(bed, "middock", "keys:remove", "ci")
    refused = bed.exec(*as_ci, user=LAPTOP, check=False)
    assert refused.returncode != 0 and "Permission denied" in refused.stderr, refused.stderr


def test_root_refresh(bed: ServerBed) -> None:
    root(bed, "middock", "refresh")
    assert "hello" in over_ssh(bed, "apps").stdout


DASHBOARD = "middock-dashboard-deploy"


def dashboard_pid(bed: ServerBed) -> int:
    return int(root(bed, "systemctl", "show", "-p", "MainPID", "--value", f"{DASHBOARD}.service").stdout)


def test_the_dashboard_starts_when_asked_through_a_tunnel_and_exits_when_idle(bed: ServerBed) -> None:
    """systemd listens on the dashboard's port (socket activation) and starts it at the first
    connection; it exits once idle, holding no memory, and the next connection starts it again."""
    assert root(bed, "systemctl", "is-active", f"{DASHBOARD}.socket").stdout.strip() == "active"
    idle = f"/etc/systemd/system/{DASHBOARD}.service.d"
    root(bed, "install", "-d", idle)
    root(bed, "tee", f"{idle}/idle.conf", input="[Service]\nEnvironment=MIDDOCK_DASHBOARD_IDLE=3\n")
    root(bed, "systemctl", "daemon-reload")
    given = over_ssh(bed, "dashboard").stdout
    login = re.search(r"http://127\.0\.0\.1:7800(/login/\S+)", given)
    assert login and "ssh -N -L 7800:127.0.0.1:7800 deploy@" in given, given
    tunnel = bed.spawn("ssh", "-N", "-L", "17800:127.0.0.1:7800", "deploy@localhost", user=LAPTOP)
    site = "http://127.0.0.1:17800"
    try:
        cookies = ("-c", "dashboard.cookies", "-b", "dashboard.cookies")
        assert "Logged in" in page_soon(lambda: page(bed, site + login[1], *cookies))
        assert 'data-app="hello"' in page(bed, site + "/", *cookies)
        pid = dashboard_pid(bed)
        assert pid and root(bed, "ps", "-o", "user=", "-p", str(pid)).stdout.strip() == "deploy"
        rss = root(bed, "grep", "VmRSS", f"/proc/{pid}/status").stdout.split()[1]
        report(f"dashboard: {int(rss) / 1024:.1f} MiB resident while serving")
        deadline = time.monotonic() + 60
        while dashboard_pid(bed) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert dashboard_pid(bed) == 0, "the dashboard did not exit once idle"
        report("dashboard: no process, 0 MiB resident, once idle")
        started = time.monotonic()
        assert 'data-app="hello"' in page(bed, site + "/", *cookies)
        report(f"dashboard: first request after idle (systemd starts it) {time.monotonic() - started:.2f} s")
    finally:
        tunnel.terminate()
        tunnel.wait(timeout=10)
        root(bed, "rm", "-r", idle)
        root(bed, "systemctl", "daemon-reload")


def test_root_edge_stop_start_and_status(bed: ServerBed, state: dict) -> None:
    shown = json.loads(root(bed, "middock", "edge", "--json").stdout)
    assert shown["running"] == {"haproxy": True, "caddy": True}, shown
    assert [route["app"] for route in shown["routes"]] == ["hello"], shown
    assert "hello" in root(bed, "middock", "edge").stdout
    root(bed, "middock", "edge:stop")
    stopped = root(bed, "systemctl", "is-active", *EDGE_UNITS, check=False).stdout.split()
    assert stopped == ["inactive", "inactive"], stopped
    assert page(bed, app_url(state)).startswith("failed: curl exit 7"), "the app's port answers with the edge stopped"
    root(bed, "middock", "edge:start")
    assert root(bed, "systemctl", "is-active", *EDGE_UNITS, check=False).stdout.split() == ["active", "active"]
    assert "Hello from middock" in page_soon(lambda: page(bed, app_url(state)))
    status = root(bed, "sudo", "-u", "deploy", "middock", "status", "hello")
    assert "hello" in status.stdout and "laptop@laptop" in status.stdout, status.stdout


def test_install_again_restarts_nothing(bed: ServerBed, state: dict) -> None:
    before = running(bed)
    again = install(bed)
    assert again.returncode == 0, again.stdout + again.stderr
    assert running(bed) == before, "install.sh run again restarted a proxy or a container of the app"
    assert "Hello from middock" in page(bed, app_url(state))


def test_push_after_root_commands_and_no_root_owned_files(bed: ServerBed, state: dict) -> None:
    greeting, seconds = push_next_greeting(bed, state)
    report(f"push after root's commands: {seconds:.1f} s")
    assert greeting in page(bed, app_url(state))
    assert greeting in page_by_domain(bed, "http")  # the first request through the domain after a deploy
    owned = not_owned_by(bed)
    assert owned == "", f"files under /home/deploy not owned by deploy:\n{owned}"


@pytest.mark.parametrize("event", ["reboot", "power_loss"])
def test_back_by_itself_after(event: str, bed: ServerBed, state: dict) -> None:
    probe = ["curl", "-fsS", "--max-time", "1", "-o", "/dev/null", app_url(state)]
    seconds = getattr(bed, event)(probe=probe)
    report(f"{event.replace('_', ' ')}: page answered {seconds:.1f} s after the start, no command typed")
    active = root(bed, "systemctl", "is-active", *UNITS, check=False).stdout.split()
    assert active == ["active"] * 3, active
    assert "Hello from middock" in page(bed, app_url(state))
    assert "Hello from middock" in page_soon(lambda: page_by_domain(bed, "http"))
    before = page(bed, app_url(state))
    greeting, _ = push_next_greeting(bed, state)
    assert greeting in page(bed, app_url(state))
    assert greeting in page_by_domain(bed, "http")
    over_ssh(bed, "rollback", "hello")
    heading = before.split("<p>")[0]
    assert page(bed, app_url(state)).split("<p>")[0] == heading
    assert page_by_domain(bed, "http").split("<p>")[0] == heading


def test_help_over_ssh(bed: ServerBed) -> None:
    shown = over_ssh(bed, "help").stdout
    assert "apps:create" in shown and "rollback" in shown, shown
