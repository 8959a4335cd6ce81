"""Every repository shape deploys as it is, with real pushes and the real Docker Engine: a compose
file with Compose's own `build:` (beside a build script's image), a lone Dockerfile, and a
Dockerfile with a Procfile. Base images are the tests' busybox (support/images.py)."""

from __future__ import annotations

import json
import time

import pytest
from support.apps import SLOW_CGI
from support.edge import assert_clean_switch, deploy
from support.groups import ZERO_DROP
from support.load import Load
from support.middock import one_line
from support.web import http_get

API_DOCKERFILE = """FROM middock-test/busybox
ARG GREETING=unset
RUN mkdir -p /www/cgi-bin && echo "$GREETING" > /www/greeting.html
COPY slow /www/cgi-bin/slow
COPY version.txt /www/index.html
CMD ["httpd", "-f", "-p", "8080", "-h", "/www"]
"""

BUILD_WORKER = """#!/bin/sh
set -e
printf 'FROM middock-test/busybox\\nCMD ["sleep", "1000000"]\\n' | docker build -q -t "$MIDDOCK_APP-worker:$IMAGE_TAG" -
"""

COMPOSE_BUILD = """services:
  api:
    build:
      context: ./api
      args:
        GREETING: ${GREETING:-hello}
    init: true
    stop_grace_period: 1s
  worker:
    image: ${MIDDOCK_APP}-worker:${IMAGE_TAG}
    init: true
    stop_grace_period: 1s
"""

DOCKERFILE = """FROM middock-test/busybox
RUN mkdir -p /www
COPY index.html /www/index.html
EXPOSE 8080
CMD ["sh", "-c", "echo \\"$GREETING\\" > /www/greeting.html && exec httpd -f -p \\"$PORT\\" -h /www"]
"""


def first_deploy(server, work, app: str, files: dict[str, str], greeting: str) -> tuple[str, int]:
    """The edge started, GREETING set as a config var, `files` pushed: the push's output and the app's port."""
    server.start_edge()
    server.middock("config:set", app, f"GREETING={greeting}", "--no-deploy")
    for name, text in files.items():
        work.write(name, text, executable=name.startswith("docker/") or name.endswith("slow"))
    return deploy(work, "v1"), server.app_port(app)


@ZERO_DROP
@pytest.mark.slow
def test_compose_build_goes_live_beside_a_build_scripts_image_and_rebuilds_only_what_changed(server, work, app):
    files = {
        "compose.yaml": COMPOSE_BUILD,
        "api/Dockerfile": API_DOCKERFILE,
        "api/slow": SLOW_CGI,
        "api/version.txt": "v1\n",
        "docker/build-worker.sh": BUILD_WORKER,
        "middock.env": "MIDDOCK_WEB=api:8080\n",
    }
    first, port = first_deploy(server, work, app, files, "from-a-config-var")
    assert "-----> Repository shape: build scripts + compose build" in first
    assert "-----> Building api with Compose (build:)" in first
    assert http_get(port) == "v1\n" and http_get(port, "/greeting.html") == "from-a-config-var\n"
    ps = {row["service"] for row in json.loads(server.middock("ps", app, "--json").stdout)}
    assert ps == {"api", "worker"}

    with Load(port) as load:
        time.sleep(1)
        work.write("api/version.txt", "v2\n")
        second = deploy(work, "v2")
        time.sleep(1)
    assert_clean_switch(load.report, "v1", "v2")
    build_lines = [line for line in second.splitlines() if "Using cache" in line or "CACHED" in line]
    assert len(build_lines) >= 2, second  # the RUN and the first COPY: only version.txt's layer is new


def test_a_lone_dockerfile_goes_live_on_the_port_it_exposes_and_rolls_back(server, work, app):
    first, port = first_deploy(server, work, app, {"Dockerfile": DOCKERFILE, "index.html": "v1\n"}, "hello-config")
    assert "-----> Repository shape: Dockerfile (no compose file); middock's compose file for it:" in first
    assert '"PORT=8080"' in first
    assert http_get(port) == "v1\n" and http_get(port, "/greeting.html") == "hello-config\n"
    shown = server.middock("releases:output", app).stdout
    assert '"dockerfile": "Dockerfile"' in shown
    work.write("index.html", "v2\n")
    deploy(work, "v2")
    assert http_get(port) == "v2\n"
    rolled = server.middock("rollback", app)
    assert "is live" in rolled.stdout
    assert http_get(port) == "v1\n"


def test_a_procfile_runs_its_release_command_first_and_scales_its_worker(server, work, app):
    server.start_edge()
    work.write("Dockerfile", DOCKERFILE.replace("EXPOSE 8080\n", ""))
    work.write("index.html", "procfile\n")
    work.write(
        "Procfile",
        "web: echo web > /dev/null && exec httpd -f -p $PORT -h /www\n"
        "worker: sleep 1000000\n"
        "release: echo the release command ran on port $PORT\n",
    )
    pushed = deploy(work, "procfile")
    assert "-----> Repository shape: Dockerfile + Procfile (no compose file)" in pushed
    lines = pushed.splitlines()
    assert any("the release command ran on port 5000" in line for line in lines), pushed
    ran = next(i for i, line in enumerate(lines) if "the release command ran on port 5000" in line)
    assert ran < next(i for i, line in enumerate(lines) if "is live at" in line)
    assert http_get(server.app_port(app)) == "procfile\n"  # web on PORT 5000, behind the edge
    services = sorted(row["service"] for row in json.loads(server.middock("ps", app, "--json").stdout))
    assert services == ["web", "worker"]
    server.middock("ps:scale", app, "worker=2")
    services = sorted(row["service"] for row in json.loads(server.middock("ps", app, "--json").stdout))
    assert services == ["web", "worker", "worker"]


WEB_BUILD = """services:
  web:
    build: ./web
    environment:
      PORT: 8080
    stop_grace_period: 1s
"""

SHAPES = {  # each shape's smallest web app, serving {page} on /
    "Dockerfile": {"Dockerfile": DOCKERFILE, "index.html": "{page}\n"},
    "Dockerfile + Procfile": {
        "Dockerfile": DOCKERFILE.replace("EXPOSE 8080\n", ""),
        "Procfile": "web: exec httpd -f -p $PORT -h /www\n",
        "index.html": "{page}\n",
    },
    "compose build": {
        "compose.yaml": WEB_BUILD,
        "web/Dockerfile": DOCKERFILE,
        "web/index.html": "{page}\n",
        "middock.env": "MIDDOCK_WEB=web:8080\n",
    },
}


@pytest.mark.parametrize("shape", SHAPES)
def test_gate_mode_a_branchs_preview_and_a_job_work_on_each_shape(server, work, shape):
    server.start_edge()
    app = server.create_app("g", "--gate")
    work.git("remote", "add", "production", str(server.repo_path(app)))
    for name, text in SHAPES[shape].items():
        work.write(name, text.format(page="main"))
    work.write("middock.cron", "greet  @hourly  web  echo hello from the job\n")
    pushed = deploy(work, "main")
    assert f"-----> Repository shape: {shape}" in pushed
    assert http_get(server.app_port(app)) == "main\n"
    job = server.middock("cron:run", app, "greet")
    assert "hello from the job" in job.stdout, job.stdout + job.stderr
    server.middock("apps:set", app, "previews", "on")
    work.git("checkout", "-q", "-b", "feature")
    page = "web/index.html" if shape == "compose build" else "index.html"
    work.write(page, "the branch's own\n")
    work.commit("a feature")
    branch = work.push("feature")
    assert "is live at" in branch.stderr, branch.stderr
    assert http_get(server.app_port(f"{app}--feature")) == "the branch's own\n"
    assert http_get(server.app_port(app)) == "main\n"


@pytest.mark.parametrize(
    ("files", "says"),
    [
        ({"Dockerfile": "FROM middock-test/busybox\nRUN false\n"}, "compose build failed"),
        ({"Dockerfile": DOCKERFILE, "Procfile": "web httpd\n"}, "Procfile line 1: expected `TYPE: COMMAND`"),
        ({"Dockerfile": DOCKERFILE, "Procfile": "Web!: httpd\n"}, "'Web!' is not a process type"),
        (
            {"compose.yaml": "services:\n  web:\n    build: ../outside\n"},
            "service web: build context '../outside' is outside the repository",
        ),
        ({"README": "no Dockerfile, no compose file\n"}, "no compose file in the repository root"),
    ],
)
def test_a_bad_shape_is_one_line_and_the_live_release_keeps_serving(server, work, app, files, says):
    server.start_edge()
    work.write("Dockerfile", DOCKERFILE)
    work.write("index.html", "live\n")
    deploy(work, "live")
    port = server.app_port(app)
    for name in ("Dockerfile", "index.html"):
        work.git("rm", "-q", name)
    for name, text in files.items():
        work.write(name, text)
    work.commit("broken")
    work.push()
    failed = server.middock("deploy", app, check=False)
    one_line(failed, says)
    assert http_get(port) == "live\n"
