"""A push while the Docker daemon is really stopped: one line, nothing changed, and everything back
once the daemon starts again; after a restart of the daemon, the live release is back by itself
and a stopped app stays stopped.

The daemon stopped here is a private one (tests/support/swarm_bed.py, one bare engine in a network
namespace of its own, with its own data root, exec root, sockets and cgroup), never the machine's,
which other tests use meanwhile. middock and the push reach it through DOCKER_HOST, as they would
reach the server's own daemon.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import pytest
from support.apps import write_busybox_app
from support.images import BUSYBOX_IMAGE
from support.ports import free_port
from support.swarm_bed import BedError, SwarmBed, missing_requirements, reap_stale_beds

pytestmark = [pytest.mark.bed, pytest.mark.xdist_group("private-dockerd")]


@pytest.fixture
def engine():
    """A private Docker daemon holding the tests' busybox image; removed with all it ran (ask for it
    before `server`, so the app is destroyed while the daemon still runs)."""
    missing = missing_requirements(registry=False)
    if missing:
        pytest.skip(f"a private Docker daemon needs {', '.join(missing)}")
    reap_stale_beds()
    with SwarmBed(1, registry=False, swarm=False) as bed:
        bed.load_image(BUSYBOX_IMAGE)
        yield bed


def page(bed: SwarmBed, port: int, timeout: float = 30) -> str:
    """The app's page, from inside the daemon's network namespace, retried while it comes up."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return bed.http_get(f"http://127.0.0.1:{port}/")
        except BedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def back(bed: SwarmBed, port: int) -> str:
    """The page once the restarted daemon brought the app back; else what its containers and its
    log say (a CI run once saw the port reset connections for 30 s)."""
    try:
        return page(bed, port, timeout=60)
    except BedError as error:
        listed = bed.client(1).containers.list(all=True)
        containers = [(c.name, c.status, c.attrs["State"].get("Error")) for c in listed]
        log = bed.manager.log.read_text(errors="replace").splitlines()[-30:]
        raise AssertionError(f"{error}\ncontainers: {containers}\ndockerd: " + "\n".join(log)) from None


def app_state(folder: Path) -> dict[str, str]:
    """Every file of the app's state (releases, live pointer, settings, config): its content's
    hash and its mtime, so a rewrite with the same bytes counts as a change too. The deploy
    queue's bookkeeping of each request (queue/, last-request.json) is left out."""
    return {
        str(path.relative_to(folder)): f"{hashlib.sha256(path.read_bytes()).hexdigest()} {path.stat().st_mtime_ns}"
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.parts[len(folder.parts)] not in ("queue", "last-request.json")
    }


def test_a_push_while_the_daemon_is_stopped_changes_nothing_and_deploys_once_it_is_back(engine, server, work, app):
    for env in (server.env, work.env):
        env["DOCKER_HOST"] = engine.manager.docker_host
    port = free_port()
    write_busybox_app(work, port, "v1")
    work.commit("v1")
    assert "is live" in work.push().stderr
    assert page(engine, port) == "v1"
    state = server.home / ".middock" / app
    before = app_state(state)

    engine.stop_node(1, kill=False)  # SIGTERM, and wait: it stops the app's containers as it goes
    work.write("page.html", "v2")
    work.commit("v2")
    pushed = work.push()
    errors = [line for line in pushed.stderr.splitlines() if " !     " in line]
    assert len(errors) == 1 and "the Docker daemon is not reachable" in errors[0], pushed.stderr
    assert "nothing was changed" in errors[0] and "-----> " not in pushed.stderr, pushed.stderr
    assert app_state(state) == before
    status = server.middock("status", app, check=False)
    assert status.returncode != 0 and len(status.stderr.splitlines()) == 1, status.stderr
    assert "the Docker daemon is not reachable" in status.stderr

    engine.start_node(1, wait=False)
    assert back(engine, port) == "v1"  # back by itself, with no middock command: the live release
    assert [(r["number"], r["live"]) for r in server.releases(app)] == [(1, True)]
    work.write("page.html", "v3")
    work.commit("v3")
    deployed = work.push()
    assert "-----> Release 2" in deployed.stderr and "is live" in deployed.stderr, deployed.stderr
    assert page(engine, port) == "v3"


def test_the_live_release_comes_back_after_a_docker_restart_and_a_stopped_app_stays_stopped(
    engine, server, work, app, tmp_path
):
    stopped = server.create_app("stopped")
    other = type(work)(tmp_path / "other")
    other.git("remote", "add", "production", str(server.repo_path(stopped)))
    for env in (server.env, work.env, other.env):
        env["DOCKER_HOST"] = engine.manager.docker_host
    port, stopped_port = free_port(), free_port()
    for tree, at, text in ((work, port, "v1"), (other, stopped_port, "s1")):
        write_busybox_app(tree, at, text)
        tree.commit(text)
        assert "is live" in tree.push().stderr
    server.middock("ps:stop", stopped)

    engine.stop_node(1, kill=False)
    engine.start_node(1, wait=False)
    assert back(engine, port) == "v1"  # no middock command ran
    with pytest.raises(BedError):
        engine.http_get(f"http://127.0.0.1:{stopped_port}/", timeout=3)
    assert all(row["state"] == "exited" for row in json.loads(server.middock("ps", stopped, "--json").stdout))
    server.middock("ps:start", stopped)
    assert page(engine, stopped_port) == "s1"
