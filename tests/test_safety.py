"""Deploys that never hurt: one at a time, coalesced, disconnect-proof, crash-safe."""

from __future__ import annotations

import errno
import json
import os
import signal
import time
from pathlib import Path

import docker
import pytest
from support.apps import BUILD_WEB, write_busybox_app
from support.images import BUSYBOX_IMAGE
from support.ports import free_port
from support.waiting import wait_for
from support.web import http_get

# A build script that says when it starts, prints a lot, then takes its time.
SLOW_BUILD = BUILD_WEB.replace(
    "set -e\n",
    'set -e\ntouch "$MARKERS/build-$IMAGE_TAG"\n'
    'i=0; while [ $i -lt 2000 ]; do echo "noise line $i of the build"; i=$((i+1)); done\n'
    "sleep ${BUILD_SLEEP:-3}\n",
)


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
        lambda: [r for r in server.releases(app) if r["result"] != "deploying"], what="the deploy to end", interval=0.5
    )[0]
    assert release["result"] == "succeeded" and release["live"]
    assert http_get(port) == "v1"
    log = server.middock("releases:output", app).stdout
    assert "noise line 1999 of the build" in log
    assert log.rstrip().endswith("is live, deployed in " + log.rstrip().rsplit("deployed in ", 1)[1])


def kill_deploy_at(server, app, stage: str) -> None:
    """SIGKILL the deploy process of the newest release, which must be at `stage` right now (the
    caller has made sure it is held there)."""
    release = server.releases(app)[-1]
    assert (release["result"], release["stage"]) == ("deploying", stage), release
    os.kill(release["pid"], signal.SIGKILL)


def waiting_reader(fifo: Path) -> list[int] | None:
    """A write end of `fifo` if a process is blocked opening it to read, else None."""
    try:
        return [os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)]
    except OSError as error:
        assert error.errno == errno.ENXIO, error
        return None


def hold_at_checkout(server, work, app) -> None:
    """Push the commit so that its checkout blocks reading page.html, then kill it there.

    The commit's objects arrive first on a branch that does not deploy; the loose object of the
    new page.html is then swapped for a FIFO, so when the deploy branch is pushed the checkout
    (dulwich) blocks opening it. Once a reader waits on the FIFO the deploy is killed, and the
    real object is put back."""
    work.push("HEAD:refs/heads/held")
    blob = work.git("rev-parse", "HEAD:page.html").stdout.strip()
    path = server.repo_path(app) / "objects" / blob[:2] / blob[2:]
    assert path.is_file(), "the blob was packed, not stored loose"
    data = path.read_bytes()
    path.unlink()
    os.mkfifo(path)
    try:
        push = work.start_push()
        writer = wait_for(lambda: waiting_reader(path), what="the checkout to read page.html")
        kill_deploy_at(server, app, "checkout")
        os.close(writer[0])
    finally:
        path.with_suffix(".real").write_bytes(data)
        os.replace(path.with_suffix(".real"), path)
    finish_killed_push(push)


def hold_at_build(work, app, server, pid_file: Path) -> int:
    """Push with a build script that starts a long child (as `docker build` is) and waits for it;
    kill the deploy while it waits. Returns the child's pid."""
    work.env["HOLD_BUILD"] = str(pid_file)
    try:
        push = work.start_push()
        child = wait_for(lambda: pid_file.exists() and int(pid_file.read_text()), what="the build script's child")
        kill_deploy_at(server, app, "build")
    finally:
        del work.env["HOLD_BUILD"]
    finish_killed_push(push)
    return child


def containers_named(client, name: str) -> list:  # noqa: ANN001
    """The containers whose name holds `name`; none while one listed is gone before it is read
    (the SDK reads each listed container in turn, and Compose may remove one in between)."""
    try:
        return client.containers.list(all=True, filters={"name": name})
    except docker.errors.NotFound:
        return []


def hold_mid_recreate(work, app, server, client) -> tuple:
    """Push and kill the deploy while its `docker compose up` recreates web: its replacement is
    created under the temporary name `<old id>_<name>` and the old container is being stopped
    (release 1's web takes 3 s to stop). Returns (old container, replacement)."""
    old = client.containers.get(f"{app}-web-1")
    push = work.start_push()
    temporary = f"{old.id[:12]}_{app}-web-1"
    replacement = wait_for(lambda: containers_named(client, temporary), what=temporary)[0]
    kill_deploy_at(server, app, "up")
    finish_killed_push(push)
    return old, replacement


def hold_at_health(work, app, server) -> None:
    """Push a web whose first health check takes 30 s; kill the deploy while it waits for it."""
    push = work.start_push()
    wait_for(lambda: server.releases(app)[-1]["stage"] == "health", what="the health gate", interval=0.5)
    kill_deploy_at(server, app, "health")
    finish_killed_push(push)


def finish_killed_push(push) -> None:
    output = push.communicate(timeout=60)[0]
    assert "the deploy process ended unexpectedly" in output, output


def containers_of(client, app: str) -> list:
    return client.containers.list(all=True, filters={"label": f"com.docker.compose.project={app}"})


def assert_settled(server, app, client, port: int, stage: str, restored: bool, afresh: bool = False) -> None:
    """`status` settles the killed deploy: its release is recorded interrupted at `stage`, and
    exactly release 1 runs (its web and worker, its images, nothing else of the app) and serves."""
    shown = server.middock("status", app, "--json")
    history = server.releases(app)
    assert f"Release {history[-1]['number']} was interrupted during {stage}" in shown.stderr, shown.stderr
    assert ("restored release 1" in shown.stderr) is restored, shown.stderr
    assert ("starting the live release afresh" in shown.stderr) is afresh, shown.stderr
    status = json.loads(shown.stdout)
    assert status["live"]["number"] == 1 and status["state"] == "live", status
    assert (history[-1]["stage"], history[-1]["result"]) == (stage, "interrupted")
    running = {c.name: c for c in containers_of(client, app)}
    assert sorted(running) == [f"{app}-web-1", f"{app}-worker-1"], sorted(running)
    assert all(c.status == "running" for c in running.values()), {n: c.status for n, c in running.items()}
    assert running[f"{app}-web-1"].image.id == history[0]["images"]["web"]
    assert http_get(port) == "v1"


# Release 1's web takes 3 s to stop (httpd as PID 1 ignores SIGTERM): the window in which a kill
# lands mid-recreate. The worker depends on web, so Compose leaves it alone until web is done.
RELEASE_1_WEB = "    stop_grace_period: 3s\n"
WORKER_AFTER_WEB = "  worker:\n    depends_on: [web]\n"
SLOW_HEALTH = '    healthcheck:\n      test: ["CMD", "sleep", "30"]\n      interval: 1s\n      timeout: 60s\n'
HELD_BUILD = BUILD_WEB.replace(
    "set -e\n",
    'set -e\nif [ -n "$HOLD_BUILD" ]; then\n'
    '  sleep 600 & echo $! > "$HOLD_BUILD.tmp"; mv "$HOLD_BUILD.tmp" "$HOLD_BUILD"; wait\nfi\n',
)


def with_web_settings(compose: str, settings: str) -> str:
    """The test compose file with extra settings for the web service."""
    return compose.replace("    stop_grace_period: 1s\n  worker:\n", f"{settings}{WORKER_AFTER_WEB}", 1)


@pytest.mark.slow
def test_a_killed_deploy_is_settled_at_each_stage(server, work, app, tmp_path, docker_client):
    """kill -9 of the deploy process held at each stage: the release is recorded interrupted,
    release 1 is live and serving exactly as it was (status brings it back if the stack was
    touched, even half-recreated), no program the deploy started runs on, and the next push
    deploys normally.

    A kill mid-recreate leaves web's replacement under its temporary name. Settling it either
    recreates past it, or, when Compose trips on that name, starts release 1 afresh; which one
    happens depends on a race inside Compose (it removes the extra container while it creates
    the replacement), so each is made certain here: the first with the old container gone too
    (a Compose killed between removing it and renaming the replacement), the second with the
    name held by a container Compose cannot remove."""
    port = free_port()
    write_busybox_app(work, port, "v1")
    base = (work.path / "compose.yaml").read_text()
    work.write("docker/build-web.sh", HELD_BUILD, executable=True)
    work.write("compose.yaml", with_web_settings(base, RELEASE_1_WEB))
    work.commit("v1")
    assert "is live" in work.push().stderr
    compose = with_web_settings(base, "    stop_grace_period: 1s\n")

    def commit(stage: str, compose: str = compose) -> None:
        work.write("compose.yaml", compose)
        work.write("page.html", f"killed at {stage}")
        work.commit(f"to be killed at {stage}")

    untouched = {c.id for c in containers_of(docker_client, app)}
    commit("checkout")
    hold_at_checkout(server, work, app)
    assert_settled(server, app, docker_client, port, "checkout", restored=False)
    assert {c.id for c in containers_of(docker_client, app)} == untouched

    commit("build")
    child = hold_at_build(work, app, server, tmp_path / "build-child")
    try:
        assert_settled(server, app, docker_client, port, "build", restored=False)
        assert {c.id for c in containers_of(docker_client, app)} == untouched

        commit("up, past the replacement")
        old, replacement = hold_mid_recreate(work, app, server, docker_client)
        old.remove(force=True)
        assert_settled(server, app, docker_client, port, "up", restored=True)

        commit("up, replacement's name held")
        old, replacement = hold_mid_recreate(work, app, server, docker_client)
        replacement.remove(force=True)
        holder = docker_client.containers.create(BUSYBOX_IMAGE, name=replacement.name)
        try:
            assert_settled(server, app, docker_client, port, "up", restored=True, afresh=True)
            holder.reload()  # not the app's container: left as it is (NotFound if it was removed)
        finally:
            holder.remove(force=True)

        commit("health", with_web_settings(base, "    stop_grace_period: 1s\n" + SLOW_HEALTH))
        hold_at_health(work, app, server)
        assert_settled(server, app, docker_client, port, "health", restored=True)

        work.write("compose.yaml", compose)
        work.write("page.html", "after the crashes")
        work.commit("normal again")
        result = work.push()
        assert "is live" in result.stderr, result.stderr
        assert http_get(port) == "after the crashes"
        assert not Path(f"/proc/{child}").exists(), "the build script's child outlived the killed deploy"
    finally:
        if Path(f"/proc/{child}").exists():
            os.kill(child, signal.SIGKILL)


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
