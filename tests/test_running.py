"""Running apps: ps, runtime logs, scale, stop/start/restart. (The app back by itself after a
restart of the Docker daemon is in test_docker_down.py, on a private daemon.) Real Docker Engine,
real git pushes, the real edge."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import docker
import pytest
from support.apps import WEB_APP_COMPOSE, write_busybox_app, write_web_app
from support.groups import ZERO_DROP
from support.load import Load
from support.ports import free_port
from support.web import http_get

SLEEPING = '["sleep", "1000000"]'
TICK = '["sh", "-c", "i=0; while true; do i=$$((i+1)); echo tick $$i; sleep 0.2; done"]'  # a worker that prints
TICKING = WEB_APP_COMPOSE.replace(SLEEPING, TICK)


def deploy(work, message: str) -> None:
    work.commit(message)
    result = work.push()
    assert "is live" in result.stderr, result.stderr


def containers(client: docker.DockerClient, project: str, service: str) -> list:
    return client.containers.list(
        filters={"label": [f"com.docker.compose.project={project}", f"com.docker.compose.service={service}"]}
    )


def live_project(server, app: str) -> str:
    status = json.loads(server.middock("status", app, "--json").stdout)
    return status["live"]["project"] or app


def starts(client: docker.DockerClient, project: str, service: str) -> set[tuple[str, str]]:
    """Each running container of a service as Docker Engine knows it: (id, when it last started).
    A restart changes the second, a recreation both."""
    return {(c.id, c.attrs["State"]["StartedAt"]) for c in containers(client, project, service)}


def test_ps_and_runtime_logs(server, work, app):
    server.start_edge()
    write_web_app(work, "v1", TICKING)
    deploy(work, "v1")

    listed = json.loads(server.middock("ps", app, "--json").stdout)
    assert [(row["service"], row["state"]) for row in listed] == [("web", "running"), ("worker", "running")]
    assert all(row["release"] == 1 and row["slot"] == "blue" and row["restarts"] == 0 for row in listed)
    assert listed[0]["routes"][0].endswith(f":{server.app_port(app)}/")
    text = server.middock("ps", app).stdout
    assert "web.1" in text and "worker.1" in text and "running" in text

    time.sleep(1)
    recent = server.middock("logs", app, "-n", "3", "--service", "worker").stdout.splitlines()
    assert len(recent) == 3 and all(" worker: tick " in line for line in recent), recent
    numbers = [int(line.rsplit(" ", 1)[1]) for line in recent]
    assert numbers == sorted(numbers)
    assert "is live" in server.middock("releases:output", app).stdout
    assert "is live" in server.middock("logs", app, "--release", "1").stdout

    for bad in (["--service", "nope"], ["-n", "-2"]):
        refused = server.middock("logs", app, *bad, check=False)
        assert refused.returncode != 0 and len(refused.stderr.splitlines()) == 1, refused.stderr


def follow(server, app: str) -> subprocess.Popen:
    """`middock logs APP -t` as in a terminal, where Ctrl-C reaches it (a test run in the background
    inherits SIGINT ignored, and Python then never raises KeyboardInterrupt)."""
    return subprocess.Popen(
        [sys.executable, "-m", "middock_receiver", "logs", app, "-t", "--service", "worker"],
        env=server.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def test_logs_follow_shows_new_lines_and_leaves_nothing_behind(server, work, app):
    write_busybox_app(work, free_port(), "v1")
    work.write("compose.yaml", (work.path / "compose.yaml").read_text().replace(SLEEPING, TICK))
    deploy(work, "v1")
    following = follow(server, app)
    assert following.stdout is not None
    seen = [following.stdout.readline() for _ in range(15)]
    ticks = [int(line.split()[-1]) for line in seen]
    assert ticks[-1] > ticks[0] and all(b" worker: tick " in line for line in seen), seen
    following.stdout.close()  # the reader goes away
    assert following.wait(timeout=10) == 0
    assert not Path(f"/proc/{following.pid}").exists()

    interrupted = follow(server, app)
    assert interrupted.stdout is not None
    interrupted.stdout.readline()
    interrupted.send_signal(signal.SIGINT)  # Ctrl-C
    assert interrupted.wait(timeout=10) == 0


def test_scale_is_kept_across_deploys_and_rollbacks(server, work, app, docker_client):
    port = free_port()
    write_busybox_app(work, port, "v1")
    deploy(work, "v1")
    scaled = server.middock("ps:scale", app, "worker=3")
    assert "is live" in scaled.stdout, scaled.stdout
    assert len(containers(docker_client, app, "worker")) == 3
    assert "worker=3" in server.middock("ps:scale", app).stdout

    write_busybox_app(work, port, "v2")
    deploy(work, "v2")
    assert len(containers(docker_client, app, "worker")) == 3
    server.middock("rollback", app)
    assert http_get(port) == "v1" and len(containers(docker_client, app, "worker")) == 3
    assert server.releases(app)[-1]["kind"].startswith("rollback to")

    server.middock("ps:scale", app, "worker=0")
    assert containers(docker_client, app, "worker") == [] and http_get(port) == "v1"

    for bad, message in (
        (["worker=-1"], "whole number"),
        (["worker=abc"], "whole number"),
        (["worker"], "SERVICE=COUNT"),
        (["nope=2"], "no service 'nope'"),
        (["web=2"], "publishes host port"),
    ):
        refused = server.middock("ps:scale", app, *bad, check=False)
        assert refused.returncode == 1 and message in refused.stderr and len(refused.stderr.splitlines()) == 1
    unknown = server.middock("ps", "no-such-app", check=False)
    assert unknown.returncode == 1 and "does not exist" in unknown.stderr


def test_stop_start_and_restart(server, work, app, docker_client):
    port = free_port()
    write_busybox_app(work, port, "v1")
    deploy(work, "v1")
    server.middock("ps:stop", app)
    with pytest.raises(OSError):
        http_get(port, timeout=1)
    assert json.loads(server.middock("status", app, "--json").stdout)["state"] == "stopped"
    assert "stopped" in server.middock("apps").stdout
    refused = server.middock("ps:restart", app, check=False)
    assert refused.returncode == 1 and "is stopped" in refused.stderr

    server.middock("ps:start", app)
    assert http_get(port) == "v1"
    assert json.loads(server.middock("status", app, "--json").stdout)["state"] == "live"
    web, worker = starts(docker_client, app, "web"), starts(docker_client, app, "worker")
    assert len(web) == len(worker) == 1
    server.middock("ps:restart", app, "web")
    assert starts(docker_client, app, "worker") == worker  # only the service asked for
    restarted = starts(docker_client, app, "web")
    assert len(restarted) == 1 and restarted.isdisjoint(web), (web, restarted)
    assert http_get(port) == "v1"
    whole = server.middock("ps:restart", app)
    assert "is live" in whole.stdout, whole.stdout
    for service, before in (("web", restarted), ("worker", worker)):
        after = starts(docker_client, app, service)
        assert len(after) == 1 and after.isdisjoint(before), (service, before, after)
    assert http_get(port) == "v1"
    assert server.middock("ps:restart", app, "nope", check=False).returncode == 1


def live_starts(server, client: docker.DockerClient, app: str) -> dict[str, set[tuple[str, str]]]:
    """The live release's web and worker containers, as `starts` gives them."""
    project = live_project(server, app)
    return {service: starts(client, project, service) for service in ("web", "worker")}


@ZERO_DROP
def test_restart_behind_the_edge_drops_no_request_and_scaled_web_gets_every_container(server, work, app, docker_client):
    server.start_edge()
    write_web_app(work, "v1")
    deploy(work, "v1")
    port = server.app_port(app)
    before = live_starts(server, docker_client, app)
    with Load(port) as load:
        time.sleep(1)
        restarted = server.middock("ps:restart", app)
        assert "is live" in restarted.stdout, restarted.stdout
        time.sleep(1)
    assert not load.report.failures, load.report.summary()
    assert server.releases(app)[-1]["kind"] == "restart of release 1"
    server.wait_idle(app)
    after = live_starts(server, docker_client, app)
    running = {c.id for c in docker_client.containers.list(ignore_removed=True)}
    for service in ("web", "worker"):  # new containers serve; the old ones stopped (kept for a rollback)
        assert len(after[service]) == 1 and after[service].isdisjoint(before[service]), (before, after)
        assert not {id_ for id_, _ in before[service]} & running

    server.middock("ps:scale", app, "web=3")
    rows = json.loads(server.middock("ps", app, "--json").stdout)
    assert sorted(row["number"] for row in rows if row["service"] == "web") == [1, 2, 3]
    scaled = live_starts(server, docker_client, app)["web"]
    assert len(scaled) == 3
    assert {http_get(port, "/host.html").strip() for _ in range(30)} == {id_[:12] for id_, _ in scaled}
    with Load(port) as load:  # a restart keeps the scale and drops nothing with 3 web containers either
        time.sleep(1)
        server.middock("ps:restart", app)
        time.sleep(1)
    assert not load.report.failures, load.report.summary()
    again = live_starts(server, docker_client, app)["web"]
    assert len(again) == 3 and again.isdisjoint(scaled), (scaled, again)
    assert {http_get(port, "/host.html").strip() for _ in range(30)} == {id_[:12] for id_, _ in again}
    previous = server.middock("rollback", app, check=False)
    assert "no earlier good release" in previous.stderr  # restarts and rescales are not releases to go back to
