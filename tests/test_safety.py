"""Deploys that never hurt: one at a time, coalesced, disconnect-proof, crash-safe."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import docker
import docker.errors
from conftest import BUILD_WEB, free_port, http_get, write_busybox_app

# A build script that says when it starts, prints a lot, then takes its time.
SLOW_BUILD = BUILD_WEB.replace(
    "set -e\n",
    'set -e\ntouch "$MARKERS/build-$IMAGE_TAG"\n'
    'i=0; while [ $i -lt 2000 ]; do echo "noise line $i of the build"; i=$((i+1)); done\n'
    "sleep ${BUILD_SLEEP:-3}\n",
)


def wait_for(predicate, timeout: float = 60, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def slow_app(work, tmp_path: Path, port: int, page: str) -> Path:
    markers = tmp_path / "markers"
    markers.mkdir(exist_ok=True)
    work.env["MARKERS"] = str(markers)
    write_busybox_app(work, port, page)
    work.write("docker/build-web.sh", SLOW_BUILD, executable=True)
    return markers


def test_waiting_pushes_coalesce_to_the_newest(server, work, app, tmp_path):
    port = free_port()
    markers = slow_app(work, tmp_path, port, "v1")
    work.env["BUILD_SLEEP"] = "4"
    first_commit = work.commit("v1")
    first = work.start_push()
    wait_for(lambda: list(markers.glob("build-*")), what="the first build")

    waiting = []
    commits = []
    for n in (2, 3, 4):
        work.write("page.html", f"v{n}")
        commits.append(work.commit(f"v{n}"))
        waiting.append(work.start_push("--force", "main"))
        # each push moves the branch, then waits behind the first deploy
        time.sleep(0.8)
    outputs = [p.communicate(timeout=120)[0] for p in [first, *waiting]]

    assert "is live" in outputs[0]
    for output in outputs[1:]:
        assert f"Waiting for release 1 ({first_commit[:7]}, " in output, output
    newest = commits[-1][:7]
    for output in outputs[1:3]:
        assert f"Superseded by {newest}" in output, output
    assert "is live" in outputs[3]
    built = sorted(p.name for p in markers.glob("build-*"))
    assert built == sorted([f"build-{first_commit[:12]}", f"build-{commits[-1][:12]}"])
    assert http_get(port) == "v4"
    assert [r["commit"] for r in server.releases(app)] == [first_commit, commits[-1]]


def test_vanished_pusher_does_not_stop_the_deploy(server, work, app, tmp_path):
    port = free_port()
    markers = slow_app(work, tmp_path, port, "v1")
    work.commit("v1")
    push = work.start_push()
    wait_for(lambda: list(markers.glob("build-*")), what="the build to start")
    os.killpg(push.pid, signal.SIGKILL)
    push.wait()

    release = wait_for(
        lambda: [r for r in server.releases(app) if r["result"] != "deploying"], what="the deploy to end"
    )[0]
    assert release["result"] == "succeeded" and release["live"]
    assert http_get(port) == "v1"
    log = server.middock("releases:output", app).stdout
    assert "noise line 1999 of the build" in log
    assert log.rstrip().endswith("is live, deployed in " + log.rstrip().rsplit("deployed in ", 1)[1])


def kill_worker_when(server, app, marker: str) -> None:
    """SIGKILL the deploy process of the newest release once its log shows `marker`."""

    def deploying():
        history = server.releases(app)
        if history and history[-1]["result"] == "deploying":
            log = server.home / ".middock" / app / "releases" / str(history[-1]["number"]) / "log"
            if log.exists() and marker in log.read_text():
                return history[-1]
        return None

    release = wait_for(deploying, what=f"{marker!r} in the log")
    os.kill(release["pid"], signal.SIGKILL)


def leave_a_half_recreated_web(client, app: str) -> None:
    """What a `docker compose up` killed while recreating can leave: the new web container
    created under its temporary name `<old id>_<name>`, beside the old one (unless the killed
    one got that far itself). Settling it either recreates past it or, when Compose trips on the
    name (it depends on the order Compose takes the containers in), starts the stack afresh."""
    name = f"{app}-web-1"
    old = client.containers.get(name)
    try:
        client.containers.create(old.image.id, name=f"{old.id[:12]}_{name}", labels=old.labels)
    except docker.errors.APIError as error:
        assert error.status_code == 409, error


def history_stage(server, app) -> str:
    return server.releases(app)[-1]["stage"]


def with_web_settings(compose: str, settings: str) -> str:
    """The test compose file with extra settings for the web service."""
    return compose.replace("    stop_grace_period: 1s\n  worker:", f"{settings}  worker:", 1)


SLOW_HEALTH = '    healthcheck:\n      test: ["CMD", "sleep", "30"]\n      interval: 1s\n      timeout: 60s\n'


def test_a_killed_deploy_is_settled_at_each_stage(server, work, app, tmp_path, docker_client):
    """kill -9 of the deploy process at each stage: the release is recorded interrupted, the
    previous release is live and serving (status brings it back if the stack was touched, even
    half-recreated), and the next push deploys normally."""
    port = free_port()
    slow_app(work, tmp_path, port, "v1")
    work.env["BUILD_SLEEP"] = "0"
    base = (work.path / "compose.yaml").read_text()
    compose = with_web_settings(base, "    stop_grace_period: 5s\n")
    slow_health = with_web_settings(base, "    stop_grace_period: 5s\n" + SLOW_HEALTH)
    work.write("compose.yaml", compose)
    work.commit("v1")
    assert "is live" in work.push().stderr

    stages = {
        "checkout": ("Checking out", lambda: work.write("big.bin", os.urandom(48 << 20).hex())),
        "build": ("noise line 1999", lambda: work.env.update(BUILD_SLEEP="5")),
        "up": ("Starting the stack", lambda: None),
        "health": (
            "Waiting for the services",
            lambda: work.write("compose.yaml", slow_health),
        ),
    }
    recorded = {}
    for stage, (marker, prepare) in stages.items():
        work.env["BUILD_SLEEP"] = "0"
        work.write("compose.yaml", compose)
        prepare()
        work.write("page.html", f"killed at {stage}")
        work.commit(f"to be killed at {stage}")
        push = work.start_push()
        kill_worker_when(server, app, marker)
        output = push.communicate(timeout=60)[0]
        assert "the deploy process ended unexpectedly" in output, output
        if stage == "up":
            leave_a_half_recreated_web(docker_client, app)

        shown = server.middock("status", app, "--json")
        assert "was interrupted during" in shown.stderr
        if history_stage(server, app) in ("up", "health"):
            assert "restored release 1" in shown.stderr, shown.stderr
        status = json.loads(shown.stdout)
        history = server.releases(app)
        recorded[stage] = history[-1]["stage"]
        assert history[-1]["result"] == "interrupted", stage
        assert status["live"]["number"] == 1 and status["state"] == "live", stage
        assert http_get(port) == "v1", stage
        (work.path / "big.bin").unlink(missing_ok=True)
    assert recorded["build"] == "build" and recorded["health"] == "health", recorded

    work.write("compose.yaml", compose)
    work.write("page.html", "after the crashes")
    work.commit("normal again")
    result = work.push()
    assert "is live" in result.stderr, result.stderr
    assert http_get(port) == "after the crashes"
    print("stages recorded for the kills:", recorded)


def test_docker_daemon_down_changes_nothing(server, work, app):
    port = free_port()
    write_busybox_app(work, port)
    work.commit("v1")
    work.push()
    work.write("page.html", "v2")
    work.commit("v2")
    work.env["DOCKER_HOST"] = "unix:///nonexistent/docker.sock"
    result = work.push()
    errors = [line for line in result.stderr.splitlines() if " !     " in line]
    assert len(errors) == 1 and "the Docker daemon is not reachable" in errors[0], result.stderr
    assert http_get(port) == "v1"
    assert len(server.releases(app)) == 1


def test_lock_holds_deploys_with_its_reason(server, work, app):
    port = free_port()
    write_busybox_app(work, port)
    work.commit("v1")
    server.middock("lock", app, "database", "migration", "until", "5pm")
    held = work.push()
    assert "deploys of" in held.stderr and "(database migration until 5pm)" in held.stderr
    assert server.releases(app) == []
    assert json.loads(server.middock("apps", "--json").stdout)[0]["state"] == "locked"
    denied = server.middock("deploy", app, check=False)
    assert denied.returncode != 0 and "locked" in denied.stderr
    server.middock("unlock", app)
    assert "is live" in server.middock("deploy", app).stdout
    assert http_get(port) == "v1"
