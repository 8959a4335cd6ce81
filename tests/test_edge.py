"""The edge: blue/green deploys that drop no request, under real load, through the real proxies
(HAProxy and Caddy from Debian's packages), with a real Docker Engine and real git pushes."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time

import docker
import pytest
from support.apps import WEB_APP_COMPOSE, write_busybox_app, write_web_app
from support.edge import assert_clean_switch, deploy
from support.groups import ZERO_DROP
from support.load import Load
from support.ports import free_port
from support.web import http_get


def project_names(client: docker.DockerClient, app: str) -> set[str]:
    containers = client.containers.list(filters={"label": "com.docker.compose.project"}, ignore_removed=True)
    return {
        c.labels["com.docker.compose.project"]
        for c in containers
        if c.labels["com.docker.compose.project"].startswith(f"{app}_r")
    }


@ZERO_DROP
@pytest.mark.slow
def test_push_rollback_config_and_failed_gate_drop_no_request(server, work, app, docker_client):
    server.start_edge()
    write_web_app(work, "v1")
    first = deploy(work, "v1")
    port = server.app_port(app)
    assert f":{port}/" in [line for line in first.splitlines() if "----->" in line][-1]
    assert http_get(port) == "v1\n"

    with Load(port) as load:
        time.sleep(1)
        write_web_app(work, "v2")
        deploy(work, "v2")
        time.sleep(1)
    assert_clean_switch(load.report, "v1", "v2")

    with Load(port) as load:
        time.sleep(1)
        rollback = server.middock("rollback", app)
        assert "is live" in rollback.stdout, rollback.stdout
        time.sleep(1)
    assert_clean_switch(load.report, "v2", "v1")

    with Load(port) as load:
        time.sleep(1)
        changed = server.middock("config:set", app, "VERSION=v3")
        assert "is live" in changed.stdout, changed.stdout
        time.sleep(1)
    assert_clean_switch(load.report, "v1", "v3")

    with Load(port) as load:
        time.sleep(1)
        failed = server.middock(
            "config:set", app, "VERSION=v4", "MIDDOCK_HEALTH_PATH=/missing", "MIDDOCK_HEALTH_TIMEOUT=5", check=False
        )
        time.sleep(1)
    assert failed.returncode == 1 and "health check failed" in failed.stderr, failed.stdout
    assert not load.report.failures, load.report.summary()
    assert load.report.versions() == {"v3"}
    assert http_get(port) == "v3\n"
    assert project_names(docker_client, app) == {f"{app}_r{server.releases(app)[-2]['number']}"}
    status = json.loads(server.middock("status", app, "--json").stdout)
    assert status["routes"][0]["release"] == status["live"]["number"]


def project_states(client: docker.DockerClient, project: str) -> dict[str, str]:
    """Each container of a Compose project: id -> its state (running, exited…)."""
    containers = client.containers.list(all=True, filters={"label": f"com.docker.compose.project={project}"})
    return {c.id: c.status for c in containers}


@ZERO_DROP
def test_the_replaced_release_is_kept_stopped_and_a_rollback_only_starts_it(server, work, app, docker_client):
    """After a switch the old release's containers stay, stopped (no request reaches them), until
    the app's next deploy; a rollback to it starts those very containers (no compose up, no
    new project) under load with no failed request. A rollback to an older release, and one
    after a change of scale, take the usual way."""
    server.start_edge()
    for version in ("v1", "v2"):
        write_web_app(work, version)
        deploy(work, version)
    server.wait_idle(app)
    port = server.app_port(app)
    kept = project_states(docker_client, f"{app}_r1")
    assert kept and set(kept.values()) == {"exited"}, kept
    ps = json.loads(server.middock("ps", app, "--json").stdout)
    assert {row["container"] for row in ps} == {f"{app}_r2-web-1", f"{app}_r2-worker-1"}

    with Load(port) as load:
        time.sleep(1)
        rollback = server.middock("rollback", app)
        time.sleep(1)
    assert "its kept containers, started again, no compose up" in rollback.stdout, rollback.stdout
    assert "is live" in rollback.stdout and "docker compose up" not in rollback.stdout
    assert_clean_switch(load.report, "v2", "v1")
    status = json.loads(server.middock("status", app, "--json").stdout)
    assert status["live"]["kind"] == "rollback to 1" and status["live"]["project"] == f"{app}_r1"
    assert project_states(docker_client, f"{app}_r1") == dict.fromkeys(kept, "running")  # the very same
    server.wait_idle(app)
    assert set(project_states(docker_client, f"{app}_r2").values()) == {"exited"}  # kept in its turn

    write_web_app(work, "v4")
    deploy(work, "v4")  # release 4: replaces the rollback (release 3, running release 1's containers)
    server.wait_idle(app)
    assert project_states(docker_client, f"{app}_r2") == {}  # the next deploy removed what was kept
    assert set(project_states(docker_client, f"{app}_r1").values()) == {"exited"}
    older = server.middock("rollback", app, "2")  # not the kept one: a project of its own, as ever
    assert "docker compose up" in older.stdout and http_get(port) == "v2\n", older.stdout
    server.wait_idle(app)
    server.middock("ps:scale", app, "web=2")  # release 6 (two web containers) replaces release 5
    server.wait_idle(app)
    scaled = server.middock("rollback", app)  # to 5, kept with one web container: the usual way
    assert "docker compose up" in scaled.stdout, scaled.stdout
    rows = json.loads(server.middock("ps", app, "--json").stdout)
    assert sorted(row["number"] for row in rows if row["service"] == "web") == [1, 2]


STATEFUL_COMPOSE = (
    WEB_APP_COMPOSE.replace(
        """  worker:
    image: middock-test/busybox
    command: ["sleep", "1000000"]""",
        """  worker:
    image: middock-test/busybox
    command: ["sh", "-c", "[ -f /data/first ] || echo $$VERSION > /data/first; exec sleep 1000000"]
    environment:
      VERSION: ${VERSION:-unset}
    volumes: ["data:/data"]""",
    )
    + "volumes:\n  data: {}\n"
)


def worker_events(client: docker.DockerClient, app: str, since: float) -> list[tuple[str, str]]:
    """(action, project) of every start and death of the app's worker containers, in order."""
    wanted = {"type": "container", "event": ["start", "die"]}
    events = client.events(since=int(since), until=int(time.time()) + 1, decode=True, filters=wanted)
    found = []
    for event in events:
        if event.get("timeNano", 0) < since * 1e9:  # the filter takes whole seconds
            continue
        labels = event["Actor"]["Attributes"]
        project = labels.get("com.docker.compose.project", "")
        oneoff = labels.get("com.docker.compose.oneoff") == "True"  # `middock run`
        if labels.get("com.docker.compose.service") == "worker" and project.startswith(f"{app}_r") and not oneoff:
            found.append((event["Action"], labels["com.docker.compose.project"]))
    return found


def read_volume(server, app: str) -> str:
    return server.middock("run", app, "worker", "cat", "/data/first").stdout.strip()


def test_volume_data_stays_and_stop_first_never_runs_twice(server, work, app, docker_client):
    server.start_edge()
    write_web_app(work, "v1", STATEFUL_COMPOSE, "MIDDOCK_STOP_FIRST=worker\n")
    deploy(work, "v1")
    assert read_volume(server, app) == "v1"

    since = time.time()
    write_web_app(work, "v2", STATEFUL_COMPOSE, "MIDDOCK_STOP_FIRST=worker\n")
    deploy(work, "v2")
    assert http_get(server.app_port(app)) == "v2\n"
    assert read_volume(server, app) == "v1"  # the same volume, not a fresh one for the new project
    events = worker_events(docker_client, app, since)
    assert [action for action, _ in events] == ["die", "start"], events
    assert events[0][1] != events[1][1]

    server.middock("rollback", app)
    assert http_get(server.app_port(app)) == "v1\n"
    assert read_volume(server, app) == "v1"
    assert len(docker_client.volumes.list(filters={"name": f"{app}_data"})) == 1


def wait_for_stage(server, app: str, number: int, stage: str, timeout: float = 60) -> dict:
    path = server.home / ".middock" / app / "releases" / str(number) / "release.json"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            record = json.loads(path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            record = {}
        if record.get("stage") == stage:
            return record
        time.sleep(0.05)
    raise AssertionError(f"release {number} never reached {stage}")


def switch_like_a_deploy_killed_right_after_it(server, app: str, number: int) -> None:
    """The state a kill -9 between the edge's flip and the live record leaves (a window of a few
    milliseconds, too short to aim a kill at): the release's stage is `switch` and the edge serves it."""
    flip = (
        "import sys\n"
        "from middock_receiver.edge.control import Edge\n"
        "from middock_receiver.state import releases\n"
        "from middock_receiver.state.apps import App\n"
        "app = App.named(sys.argv[1])\n"
        "release = releases.load(app, int(sys.argv[2]))\n"
        "release.stage = 'switch'\n"
        "releases.save(app, release)\n"
        "Edge().switch(app, release.slot)\n"
    )
    subprocess.run([sys.executable, "-c", flip, app, str(number)], env=server.env, check=True, timeout=60)
    assert http_get(server.app_port(app)) == f"v{number}\n"


@pytest.mark.parametrize(
    ("stage", "settings", "survivor"),
    [
        ("health", "MIDDOCK_HEALTH_PATH=/cgi-bin/slow\n", 1),  # its gate takes 3 s: killed before the switch
        ("drain", "MIDDOCK_DRAIN_TIMEOUT=30\n", 2),  # the slow requests keep the old release draining
        ("switch", "MIDDOCK_HEALTH_PATH=/cgi-bin/slow\n", 1),  # killed at its gate, then flipped as the deploy would
    ],
)
@ZERO_DROP
def test_a_deploy_killed_at_the_gate_or_mid_drain_leaves_exactly_one_release(
    server, work, app, docker_client, stage, settings, survivor
):
    server.start_edge()
    write_web_app(work, "v1", settings=settings)
    deploy(work, "v1")
    port = server.app_port(app)
    with Load(port, keepalive=1, fresh=1, slow=2) as load:
        time.sleep(1)
        write_web_app(work, "v2", settings=settings)
        work.commit("v2")
        push = work.start_push()
        record = wait_for_stage(server, app, 2, "health" if stage == "switch" else stage)
        os.kill(record["pid"], signal.SIGKILL)
        push.communicate(timeout=60)
        if stage == "switch":
            switch_like_a_deploy_killed_right_after_it(server, app, 2)
        status = server.middock("status", app)
        time.sleep(1)
    if stage == "drain":  # it was live (its pusher was told so): only the retirement of release 1 was cut short
        assert "Release 2 is live; what it replaced was interrupted while it drained" in status.stderr, status.stderr
    else:
        assert f"interrupted during {stage}" in status.stderr, status.stderr
    assert project_names(docker_client, app) == {f"{app}_r{survivor}"}, status.stderr
    assert http_get(port) == f"v{survivor}\n"
    assert server.releases(app)[1]["result"] == ("succeeded" if stage == "drain" else "interrupted")
    assert not load.report.failures, load.report.summary()
    deploy_again = server.middock("deploy", app)
    assert "is live" in deploy_again.stdout, deploy_again.stdout


def test_app_without_web_runs_in_place_beside_the_edge(server, work, app, docker_client):
    server.start_edge()
    port = free_port()
    write_busybox_app(work, port, "v1")
    work.commit("v1")
    result = work.push()
    assert "is live, deployed" in result.stderr, result.stderr
    assert http_get(port) == "v1"
    assert {c.name for c in docker_client.containers.list(filters={"label": f"com.docker.compose.project={app}"})} == {
        f"{app}-web-1",
        f"{app}-worker-1",
    }
    assert json.loads(server.middock("edge", "--json").stdout)["routes"] == []


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ("MIDDOCK_WEB=nope:80\n", "MIDDOCK_WEB names service 'nope'"),
        ("MIDDOCK_WEB=web\n", "MIDDOCK_WEB must be SERVICE:PORT"),
        ("MIDDOCK_WEB=web:8080\nMIDDOCK_STOP_FIRST=web\n", "cannot be in MIDDOCK_STOP_FIRST"),
    ],
)
def test_bad_web_settings_are_refused_before_anything_starts(server, work, app, settings, message):
    server.start_edge()
    write_web_app(work, "v1")
    work.write("middock.env", settings)
    work.commit("bad")
    result = work.push()
    assert message in result.stderr, result.stderr
    assert "Running docker/build-web.sh" not in result.stderr


def test_a_port_published_by_another_service_is_refused(server, work, app):
    server.start_edge()
    write_web_app(work, "v1", WEB_APP_COMPOSE.replace('command: ["sleep", "1000000"]', 'ports: ["9999:9999"]'))
    work.commit("fixed port")
    result = work.push()
    assert "service worker publishes host port 9999" in result.stderr, result.stderr


def test_deploy_behind_a_stopped_edge_is_refused(server, work, app):
    write_web_app(work, "v1")
    work.commit("v1")
    result = work.push()
    assert "the edge is not running" in result.stderr, result.stderr


def https_get(port: int, name: str, root: str, path: str = "/", wait: float = 30) -> tuple[str, dict]:
    """GET https://name:port/ on loopback, verifying the certificate against `root` alone
    (retried for `wait` seconds while the edge gets the certificate)."""
    context = ssl.create_default_context(cadata=root)
    deadline = time.monotonic() + wait
    while True:
        try:
            with (
                socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
                context.wrap_socket(raw, server_hostname=name) as tls,
            ):
                conn = http.client.HTTPConnection(name, port)
                conn.sock = tls
                conn.request("GET", path)
                return conn.getresponse().read().decode(), tls.getpeercert()
        except (OSError, ssl.SSLError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def kill_proxies(server) -> None:
    for proxy in ("haproxy", "caddy"):
        pid = int((server.home / ".middock" / "_edge" / f"{proxy}.pid").read_text().split()[0])
        os.kill(pid, signal.SIGKILL)
    subprocess.run(["pkill", "-9", "-f", str(server.home / ".middock" / "_edge" / "haproxy.cfg")], check=False)


def test_domains_get_certificates_and_survive_edge_restarts(server, work, app, pebble, tmp_path):
    http_port, https_port = server.start_edge(
        f"acme-ca={pebble.directory}", f"acme-ca-root={pebble.ca}", "acme-email=ops@example.org"
    )
    other = server.create_app("other")
    added = server.middock("domains:add", app, "www.example.test", "example.test")
    assert "www.example.test, example.test" in added.stdout
    assert added.stdout.count("certificate valid until") == 2, added.stdout  # got at once, before any visitor
    taken = server.middock("domains:add", other, "example.test", check=False)
    assert taken.returncode == 1 and "already a domain of" in taken.stderr and len(taken.stderr.splitlines()) == 1
    for bad in ("not a domain", "x-.example.test", "localhost", "10.0.0.1", "a..b.test", "UPPER_case.test"):
        refused = server.middock("domains:add", other, bad, check=False)
        assert refused.returncode == 1 and "invalid domain" in refused.stderr, (bad, refused.stderr)

    write_web_app(work, "v1")
    result = deploy_tls(work)
    assert "is live at https://www.example.test:" in result
    root = pebble.root()
    for name in ("www.example.test", "example.test"):
        page, cert = https_get(https_port, name, root)
        assert page == "v1\n"
        assert ("DNS", name) in cert["subjectAltName"]

    redirect = http.client.HTTPConnection("127.0.0.1", http_port, timeout=5)
    redirect.request("GET", "/some/path?x=1", headers={"Host": "example.test"})
    response = redirect.getresponse()
    assert response.status == 308
    assert response.getheader("Location") == f"https://example.test:{https_port}/some/path?x=1"

    domains = json.loads(server.middock("domains", app, "--json").stdout)
    assert all(row["certificate"].startswith("valid until") for row in domains), domains

    server.middock("edge:stop")
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", https_port), timeout=1)
    server.middock("edge:start")
    assert https_get(https_port, "example.test", root)[0] == "v1\n"
    assert http_get(server.app_port(app)) == "v1\n"

    kill_proxies(server)
    server.middock("edge:start")
    assert https_get(https_port, "www.example.test", root)[0] == "v1\n"
    edge = json.loads(server.middock("edge", "--json").stdout)
    assert edge["running"] == {"haproxy": True, "caddy": True}
    assert [row["app"] for row in edge["routes"]] == [app]

    unknown = http.client.HTTPConnection("127.0.0.1", http_port, timeout=5)
    unknown.request("GET", "/", headers={"Host": "elsewhere.test"})
    assert unknown.getresponse().status == 404
    with pytest.raises(ssl.SSLError):  # no certificate for a name that is no app's domain
        tls_handshake(https_port, "elsewhere.test", root)

    server.middock("domains:remove", app, "example.test")
    assert https_get(https_port, "www.example.test", root)[0] == "v1\n"
    try:  # Caddy may still hold its certificate in memory: then HAProxy answers that no app is there
        assert https_get(https_port, "example.test", root, wait=0)[0] == "no app answers for this name\n"
    except ssl.SSLError:
        pass
    server.middock("edge:stop")
    server.middock("edge:start")
    with pytest.raises(ssl.SSLError):  # its certificate went with it
        tls_handshake(https_port, "example.test", root)
    assert https_get(https_port, "www.example.test", root)[0] == "v1\n"


def tls_handshake(port: int, name: str, root: str) -> None:
    context = ssl.create_default_context(cadata=root)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        context.wrap_socket(raw, server_hostname=name).close()


def deploy_tls(work) -> str:
    work.commit("v1")
    result = work.push()
    assert "is live at https://" in result.stderr, result.stderr
    return result.stderr


def test_an_apps_port_and_its_slots_ports_come_from_the_edge_settings_ranges(server, work, app):
    """`edge:set app-ports=FIRST-LAST slot-ports=FIRST-LAST`: an app's port is the first free one of
    the first range, its web containers' loopback ports are free ones of the second; a range with no
    free port left fails the deploy in one line naming the setting."""
    first, last = free_port(), free_port()
    server.start_edge(f"app-ports={first}-{first}")
    write_web_app(work, "v1")
    deploy(work, "v1")
    assert server.app_port(app) == first
    slots = json.loads((server.home / ".middock" / app / "edge.json").read_text())["slots"]
    slot_range = json.loads(server.middock("edge", "--json").stdout)["settings"]["slot-ports"]
    low, high = map(int, slot_range.split("-"))
    assert all(low <= int(e.rpartition(":")[2]) <= high for e in slots["blue"]), slots

    other = server.create_app("other")
    work.git("remote", "add", "other", str(server.repo_path(other)))
    server.middock("edge:set", f"app-ports={last}-{last}")
    with socket.socket() as taken:  # the one port of the range is not free
        taken.bind(("0.0.0.0", last))
        pushed = work.git("push", "other", "main", check=False)
    assert f"no free port for {other} in {last}-{last} (edge:set app-ports)" in pushed.stderr, pushed.stderr
