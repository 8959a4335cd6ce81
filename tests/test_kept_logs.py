"""Logs that outlive their release, and rotated logs by default, end to end: real pushes to a
real Docker Engine, in place and behind the real edge."""

from __future__ import annotations

import json
import re

import docker
from support.apps import WEB_APP_COMPOSE, write_web_app
from support.web import http_get

SAYS = '["sh", "-c", "echo {service} of $$VERSION; exec sleep 1000000"]'
IN_PLACE = f"""services:
  web:
    image: middock-test/busybox
    command: {SAYS.format(service="web")}
    environment:
      VERSION: ${{VERSION}}
    init: true
    stop_grace_period: 1s
  chatty:
    image: middock-test/busybox
    command: {SAYS.format(service="chatty")}
    environment:
      VERSION: ${{VERSION}}
    logging:
      driver: json-file
      options:
        max-size: 1m
    init: true
    stop_grace_period: 1s
"""
BEHIND_THE_EDGE = WEB_APP_COMPOSE.replace(
    '    command: ["sleep", "1000000"]\n',
    f"    command: {SAYS.format(service='worker')}\n    environment:\n      VERSION: ${{VERSION:-unset}}\n",
)


def push(work, message: str, succeeds: bool = True) -> str:
    work.commit(message)
    output = work.push().stderr
    assert ("is live" in output) == succeeds, output
    return output


def log_config(client: docker.DockerClient, project: str, service: str) -> dict:
    labels = [f"com.docker.compose.project={project}", f"com.docker.compose.service={service}"]
    (container,) = client.containers.list(filters={"label": labels})
    return container.attrs["HostConfig"]["LogConfig"]


def live(server, app: str) -> dict:
    return json.loads(server.middock("status", app, "--json").stdout)["live"]


def test_in_place_the_replaced_containers_lines_are_kept_and_logs_are_rotated(server, work, app, docker_client):
    work.write("compose.yaml", IN_PLACE)
    work.write("middock.env", 'VERSION=one\nMIDDOCK_LOG_MAX="20m 3"\n')
    push(work, "one")
    work.write("middock.env", 'VERSION=two\nMIDDOCK_LOG_MAX="20m 3"\n')
    push(work, "two")

    lines = server.middock("logs", app, "-n", "1000").stdout.splitlines()
    said = [line.split(" ", 2)[::2] for line in lines]  # [release, "service: text"]
    assert said.index(["r1", "web: web of one"]) < said.index(["r2", "web: web of two"]), lines
    assert ["r1", "chatty: chatty of one"] in said and ["r2", "chatty: chatty of two"] in said, lines
    assert server.middock("logs", app, "-n", "1", "--service", "web").stdout.endswith(" web: web of two\n")
    assert server.middock("logs", app, "--service", "chatty").stdout.count("chatty of") == 2

    assert log_config(docker_client, app, "web") == {"Type": "local", "Config": {"max-size": "20m", "max-file": "3"}}
    assert log_config(docker_client, app, "chatty") == {"Type": "json-file", "Config": {"max-size": "1m"}}


def test_behind_the_edge_a_discarded_release_keeps_its_lines_and_a_bad_log_max_changes_nothing(
    server, work, app, docker_client
):
    server.start_edge()
    for version in ("v1", "v2", "v3"):  # the switch to v3 removes v1's containers, kept stopped since v2
        write_web_app(work, version, BEHIND_THE_EDGE)
        push(work, version)
        server.wait_idle(app)

    shown = server.middock("logs", app, "-n", "1000", "--service", "worker").stdout.splitlines()
    assert [(line.split()[0], line.split(" ", 2)[2]) for line in shown] == [
        ("r1", "worker: worker of v1"),
        ("r3", "worker: worker of v3"),
    ], shown  # release 2's containers are kept stopped, for an instant rollback: their lines wait
    project = live(server, app)["project"]
    default = {"Type": "local", "Config": {"max-size": "10m", "max-file": "5"}}
    assert log_config(docker_client, project, "web") == default == log_config(docker_client, project, "worker")

    write_web_app(work, "v4", BEHIND_THE_EDGE, settings="MIDDOCK_LOG_MAX=lots\n")
    output = push(work, "v4", succeeds=False)
    errors = [line for line in output.splitlines() if " !     " in line]
    assert len(errors) == 1 and "MIDDOCK_LOG_MAX must be" in errors[0] and "'lots'" in errors[0], output
    assert "Running docker/build" not in output  # refused before the build
    assert live(server, app)["number"] == 3 and http_get(server.app_port(app)) == "v3\n"


def deploy_output(server, app: str, release: int) -> list[str]:
    return server.middock("releases:output", app, str(release)).stdout.splitlines()


def failure(shown: list[str]) -> int:
    """Where the deploy output says the deploy failed its health gate."""
    found = [i for i, line in enumerate(shown) if line.startswith(" !     Deploy failed: health check failed")]
    assert len(found) == 1, shown
    return found[0]


def test_in_place_a_failed_deploys_containers_lines_are_shown_under_its_output(server, work, app):
    work.write("compose.yaml", IN_PLACE)
    work.write("middock.env", "VERSION=one\n")
    push(work, "one")
    unhealthy = IN_PLACE.replace(
        "    init: true\n", '    init: true\n    healthcheck: {test: ["CMD", "false"], interval: 1s, retries: 1}\n', 1
    )
    work.write("compose.yaml", unhealthy)
    work.write("middock.env", "VERSION=two\nMIDDOCK_HEALTH_TIMEOUT=4\n")
    push(work, "two", succeeds=False)

    shown = deploy_output(server, app, 2)
    failed = failure(shown)
    assert "-----> Rolling back to release 1" in shown[:failed], shown
    web = shown.index("-----> Container web: its last lines")
    assert failed < web and shown[web + 1] == "       web of two", shown
    assert "       chatty of two" in shown[failed:], shown  # its healthy neighbour went with it
    assert not [line for line in deploy_output(server, app, 1) if "-----> Container" in line]  # succeeded
    assert server.middock("logs", app, "-n", "1", "--service", "web").stdout.endswith(" web: web of one\n")


def test_behind_the_edge_a_failed_deploys_crashing_container_says_why_under_its_output(server, work, app):
    server.start_edge()
    crashing = BEHIND_THE_EDGE.replace(
        "echo worker of $$VERSION; exec sleep 1000000", "echo worker of $$VERSION: no queue at QUEUE_URL; exit 3"
    )
    write_web_app(work, "v1", crashing, settings="MIDDOCK_HEALTH_TIMEOUT=4\n")
    output = push(work, "v1", succeeds=False)
    assert "worker of v1" not in output  # the pusher sees why in one line; the details are kept

    shown = deploy_output(server, app, 1)
    failed = failure(shown)
    assert re.search(r"worker: \S+ keeps restarting \((exit code 3|\d+ restarts)\)", shown[failed]), shown
    worker = shown.index("-----> Container worker: its last lines")
    assert failed < worker and shown[worker + 1] == "       worker of v1: no queue at QUEUE_URL", shown
    assert shown == server.middock("logs", app, "--release", "1").stdout.splitlines()
