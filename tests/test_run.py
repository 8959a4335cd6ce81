"""`run APP SERVICE CMD…`: a one-off container of the live release, stdin/stdout/stderr and the
exit code passed straight through."""

from __future__ import annotations

from support.apps import write_busybox_app
from support.ports import free_port

COMPOSE_WITH_ENV = """services:
  web:
    image: ${{MIDDOCK_APP}}-web:${{IMAGE_TAG}}
    ports: ["127.0.0.1:{port}:8080"]
    env_file: .env
    stop_grace_period: 1s
"""


def deploy_app(server, work, app: str, page: str) -> None:
    server.middock("config:set", app, "GREETING=hello from config", "--no-deploy")
    port = free_port()
    write_busybox_app(work, port, page)
    work.write("compose.yaml", COMPOSE_WITH_ENV.format(port=port))
    work.commit(page)
    assert "is live" in work.push().stderr


def test_run_passes_output_exit_code_and_stdin_through(server, work, app):
    refused = server.middock("run", app, "web", "true", check=False)
    assert refused.returncode == 1
    assert refused.stderr == f" !     {app} has no live release to run a command in; deploy it first\n"

    deploy_app(server, work, app, "v1")
    ran = server.middock(
        "run", app, "web", "sh", "-c", 'echo "$GREETING"; cat /www/index.html; echo oops >&2; exit 3', check=False
    )
    assert (ran.returncode, ran.stdout) == (3, "hello from config\nv1")
    assert "oops" in ran.stderr

    assert server.middock("run", app, "web", "cat", input="line one\nline two\n").stdout == "line one\nline two\n"
    # Arguments reach the container as given: no shell on the way.
    assert server.middock("run", app, "web", "echo", "a  b", "$HOME;", "`id`").stdout == "a  b $HOME; `id`\n"

    missing = server.middock("run", app, "db", "true", check=False)
    assert missing.returncode == 1
    assert missing.stderr == f" !     {app} has no service 'db' in release 1 (services: web)\n"


def test_run_uses_the_live_release_not_a_failed_newer_one(server, work, app):
    deploy_app(server, work, app, "v1")
    work.write("page.html", "v2")
    work.write("middock.env", "MIDDOCK_RELEASE_COMMAND='web false'\n")
    work.commit("v2, whose release command fails")
    assert "Deploy failed" in work.push().stderr
    assert server.middock("run", app, "web", "cat", "/www/index.html").stdout == "v1"
