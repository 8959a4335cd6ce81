"""examples/compose-build, examples/dockerfile and examples/procfile deployed as a user would: each
example copied into a work tree and pushed with the real git client, its images built by middock
from the repository as it is, behind the edge, a config var set with `config:set` before the push.

The examples start `FROM python:3.12-slim`, the registry's image; the suite reaches no registry,
so the tests' Debian base image (support/debian_base.py: Debian with python3) is tagged
`python:3.12-slim` in the Docker daemon the deploys use, unless that daemon has the registry's
image already."""

from __future__ import annotations

import json
import re
import shutil

import docker
import pytest
from support.debian_base import ensure_debian_base
from support.debian_rootfs import RECIPE_LABEL
from support.edge import deploy
from support.middock import ROOT, Server, Workdir
from support.web import http_get

PYTHON_IMAGE = "python:3.12-slim"
LOCAL_FILES = shutil.ignore_patterns("__pycache__", "*.pyc")
RELEASE_LINE = "release: nothing to migrate; the web process will listen on port 5000"


@pytest.fixture(scope="module")
def python_image(docker_client: docker.DockerClient) -> str:
    """`python:3.12-slim` in the machine's daemon: the registry's image if it is there, else (or
    if an earlier run tagged an older one) the Debian base image under that name."""
    try:
        found = docker_client.images.get(PYTHON_IMAGE)
    except docker.errors.ImageNotFound:
        found = None
    if found is None or RECIPE_LABEL in (found.labels or {}):
        repository, tag = PYTHON_IMAGE.split(":")
        docker_client.images.get(ensure_debian_base(docker_client)).tag(repository, tag)
    return PYTHON_IMAGE


def push_example(server: Server, work: Workdir, app: str, name: str, **config: str) -> str:
    """examples/NAME committed in the work tree and pushed, after `config:set` of `config`; the
    push's output, once it says the release is live."""
    if config:
        server.middock("config:set", app, *(f"{key}={value}" for key, value in config.items()), "--no-deploy")
    shutil.copytree(ROOT / "examples" / name, work.path, dirs_exist_ok=True, ignore=LOCAL_FILES)
    return deploy(work, f"the {name} example")


def services(server: Server, app: str) -> list[str]:
    return sorted(row["service"] for row in json.loads(server.middock("ps", app, "--json").stdout))


def test_compose_build_example_builds_both_services_and_web_asks_the_api(server, work, app, python_image):
    """Compose builds web (with the commit as a build arg) and api from their folders; the page
    greets with the config var, counts visits through the api, and shows the pushed version."""
    server.start_edge()
    pushed = push_example(server, work, app, "compose-build", GREETING="Hi from a config var")
    assert "-----> Repository shape: compose build" in pushed
    assert re.search(r"-----> Building (web, api|api, web) with Compose \(build:\)", pushed), pushed
    port = server.app_port(app)
    first, second = http_get(port), http_get(port)
    assert "<h1>Hi from a config var</h1>" in first
    assert "visit 1, counted by the api service" in first and "visit 2," in second
    assert f"version {work.git('rev-parse', 'HEAD').stdout[:12]}" in first
    assert http_get(port, "/health") == "ok\n"
    assert services(server, app) == ["api", "web"]


def test_dockerfile_example_serves_on_the_port_it_exposes_with_its_config_and_cron_job(server, work, app, python_image):
    """A Dockerfile and app.py: one service, web, on the port it EXPOSEs (8000, given as PORT),
    the config var in its environment and in its cron job's (whose output shows it masked)."""
    server.start_edge()
    pushed = push_example(server, work, app, "dockerfile", GREETING="Hi from a config var")
    assert "-----> Repository shape: Dockerfile (no compose file)" in pushed
    assert '"PORT=8000"' in pushed
    port = server.app_port(app)
    assert "<h1>Hi from a config var</h1>" in http_get(port)
    assert services(server, app) == ["web"]
    job = server.middock("cron:run", app, "greet")
    assert job.stdout == "***** from the hourly job\n"  # the config var's value, masked as in all output


def test_procfile_example_runs_web_and_worker_after_its_release_command(server, work, app, python_image):
    """A Dockerfile and a Procfile: the release command prints its line before the release goes
    live, web serves on PORT 5000 with the config var, the worker runs beside it and logs."""
    server.start_edge()
    pushed = push_example(server, work, app, "procfile", GREETING="Hi from a config var")
    assert "-----> Repository shape: Dockerfile + Procfile (no compose file)" in pushed
    assert RELEASE_LINE in pushed and pushed.index(RELEASE_LINE) < pushed.index("is live at"), pushed
    assert "<h1>Hi from a config var</h1>" in http_get(server.app_port(app))
    assert services(server, app) == ["web", "worker"]
    logs = server.middock("logs", app, "--service", "worker").stdout
    assert "worker started on" in logs, logs
