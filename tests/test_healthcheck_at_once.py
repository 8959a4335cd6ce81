"""The health gate runs each container's own healthcheck at once, end to end: Docker runs the first
one only after the healthcheck's `interval` (30 s by default), and a push does not wait for it,
in place and behind the real edge. A healthcheck that never passes still fails the deploy, as ever."""

from __future__ import annotations

import io
import tarfile

import docker
from support.apps import COMPOSE, WEB_APP_COMPOSE, write_busybox_app, write_web_app
from support.ports import free_port
from support.web import http_get

from middock_receiver.pipeline import health

# The web service answers at once, but says it is ready only after about two seconds: its first
# healthchecks fail (as they would within Docker's start period), then it passes.
READY_LATER = (
    '    command: ["sh", "-c", "(sleep 2; touch /www/ready) & exec httpd -f -p 8080 -h /www"]\n'
    "    healthcheck:\n"
    '      test: ["CMD-SHELL", "test -f /www/ready || exit 1"]\n'
    "      interval: 30s\n"
    "      start_period: 1s\n"
    "      retries: 1\n"
)
ANSWERS = (
    "    healthcheck:\n"
    '      test: ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/"]\n'
    "      interval: 30s\n"
)
NEVER = '    healthcheck:\n      test: ["CMD", "false"]\n      interval: 30s\n'


def with_web_healthcheck(compose: str, healthcheck: str) -> str:
    """The compose file with `healthcheck` (and what goes with it) given to its web service."""
    web_ends = "    stop_grace_period: 1s\n  worker:"
    return compose.replace(web_ends, web_ends.replace("  worker:", f"{healthcheck}  worker:"), 1)


def web_health(client: docker.DockerClient, project: str) -> str:
    labels = [f"com.docker.compose.project={project}", "com.docker.compose.service=web"]
    (container,) = client.containers.list(filters={"label": labels})
    return container.attrs["State"]["Health"]["Status"]


def error_line(output: str) -> str:
    return [line for line in output.splitlines() if line.startswith("remote:  !")][-1]


def test_in_place_a_push_goes_live_when_its_healthcheck_passes_not_after_its_interval(server, work, app, docker_client):
    port = free_port()
    write_busybox_app(work, port, "v1")
    work.write("compose.yaml", with_web_healthcheck(COMPOSE.format(port=port), READY_LATER))
    work.commit("v1, ready after 2 s")
    pushed = work.push().stderr
    assert "is live" in pushed, pushed
    assert web_health(docker_client, app) == "starting"  # Docker has not run its check yet: middock did
    assert http_get(port) == "v1"

    work.write("compose.yaml", with_web_healthcheck(COMPOSE.format(port=port), NEVER))
    work.write("middock.env", "MIDDOCK_HEALTH_TIMEOUT=3\n")
    work.write("page.html", "v2")
    work.commit("v2, never healthy")
    failed = work.push().stderr
    assert "is live" not in failed, failed
    assert "health check failed: web: " in error_line(failed) and " is starting; " in error_line(failed), failed
    assert "rolled back to release 1" in error_line(failed), failed
    assert http_get(port) == "v1"


def test_behind_the_edge_a_push_goes_live_when_its_healthcheck_passes_not_after_its_interval(
    server, work, app, docker_client
):
    server.start_edge()
    write_web_app(work, "v1", with_web_healthcheck(WEB_APP_COMPOSE, ANSWERS))
    work.commit("v1")
    pushed = work.push().stderr
    assert "is live" in pushed, pushed
    assert web_health(docker_client, f"{app}_r1") == "starting"  # Docker has not run its check yet: middock did
    port = server.app_port(app)
    assert http_get(port) == "v1\n"

    write_web_app(work, "v2", with_web_healthcheck(WEB_APP_COMPOSE, NEVER), settings="MIDDOCK_HEALTH_TIMEOUT=3\n")
    work.commit("v2, never healthy")
    failed = work.push().stderr
    assert "is live" not in failed, failed
    assert f"health check failed: web: {app}_r2-web-1 is starting; " in error_line(failed), failed
    assert "release 1 (" in error_line(failed) and "is still serving" in error_line(failed), failed
    assert http_get(port) == "v1\n"


def test_an_instant_rollbacks_web_service_is_proven_by_the_edges_get_not_its_own_healthcheck(
    server, work, app, docker_client
):
    """A rollback to the containers the last switch kept starts them again: they passed their
    healthchecks when they went live, and the edge's GET of the health path proves the web
    service answers now, in place of its own healthcheck (here one that would fail)."""
    server.start_edge()
    breakable = '    healthcheck:\n      test: ["CMD-SHELL", "test ! -f /www/broken"]\n      interval: 30s\n'
    for version in ("v1", "v2"):
        write_web_app(work, version, with_web_healthcheck(WEB_APP_COMPOSE, breakable))
        work.commit(version)
        assert "is live" in work.push().stderr
    server.wait_idle(app)
    kept = docker_client.containers.get(f"{app}_r1-web-1")
    assert kept.status == "exited"
    kept.put_archive("/www", one_file_tar("broken"))

    rollback = server.middock("rollback", app)
    assert "its kept containers, started again" in rollback.stdout and "is live" in rollback.stdout, rollback.stdout
    assert http_get(server.app_port(app)) == "v1\n"
    assert kept.exec_run(["sh", "-c", "test ! -f /www/broken"]).exit_code == 1  # its own check fails


def test_a_web_service_others_wait_for_is_not_proven_by_the_edge_alone():
    """The edge's GET stands in for the web service's healthcheck in an instant rollback, unless
    another service waits for it to be healthy: then its healthcheck must pass."""
    resolved = {"services": {"web": {}, "worker": {"depends_on": {"web": {"condition": "service_started"}}}}}
    assert health.proven_by_edge(resolved, "web") == {"web"}
    resolved["services"]["worker"]["depends_on"]["web"]["condition"] = "service_healthy"
    assert health.proven_by_edge(resolved, "web") == frozenset()


def one_file_tar(name: str) -> bytes:
    """A tar archive of one empty file, for `put_archive`."""
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as archive:
        archive.addfile(tarfile.TarInfo(name))
    return data.getvalue()
