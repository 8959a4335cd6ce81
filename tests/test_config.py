"""Config vars: stored 0600, handed to containers byte for byte, never shown unless asked."""

from __future__ import annotations

import json
import stat

from support.apps import write_busybox_app
from support.ports import free_port
from support.web import http_get

TRICKY = {
    "SPACES": "a b  c ",
    "QUOTES": 'say "hi" it\'s',
    "DOLLAR": "$HOME ${X} $$ `id`",
    "HASH": "a #not a comment",
    "EQUALS": "k=v=w",
    "NEWLINES": "line1\nline2\n",
    "BACKSLASH": "back\\slash\\n \\'",
    "UNICODE": "ünï ☃",
}

# The web service writes each variable it got from env_file into a file it serves.
ECHO_ENV_COMPOSE = """services:
  web:
    image: ${{MIDDOCK_APP}}-web:${{IMAGE_TAG}}
    env_file: .env
    ports: ["127.0.0.1:{port}:8080"]
    stop_grace_period: 1s
    command:
      - sh
      - -c
      - for k in {keys}; do eval "printf %s \\"\\$$$$k\\"" > /www/$$k; done; exec httpd -f -p 8080 -h /www
"""


def test_values_reach_the_container_byte_for_byte_and_stay_masked(server, work, app):
    port = free_port()
    write_busybox_app(work, port)
    work.write("compose.yaml", ECHO_ENV_COMPOSE.format(port=port, keys=" ".join(TRICKY)))
    work.write("docker/build-web.sh", (work.path / "docker/build-web.sh").read_text() + 'echo "leak: $QUOTES"\n', True)
    work.commit("echo env")
    assignments = [f"{key}={value}" for key, value in TRICKY.items()]
    server.middock("config:set", app, *assignments, "--no-deploy")
    config_file = server.home / ".middock" / app / "config.env"
    assert stat.S_IMODE(config_file.stat().st_mode) == 0o600

    result = work.push()
    assert "is live" in result.stderr, result.stderr
    for key, value in TRICKY.items():
        assert http_get(port, f"/{key}") == value, key

    assert "leak: *****" in result.stderr
    log = server.middock("releases:output", app).stdout
    assert "leak: *****" in log
    shown = server.middock("config", app).stdout + server.middock("status", app).stdout
    for value in TRICKY.values():
        assert value not in result.stderr and value not in log and value not in shown
    revealed = json.loads(server.middock("config", app, "--reveal", "--json").stdout)
    assert revealed == TRICKY


def test_config_set_redeploys_and_unset_removes(server, work, app):
    port = free_port()
    write_busybox_app(work, port)
    work.write("compose.yaml", ECHO_ENV_COMPOSE.format(port=port, keys="GREETING"))
    work.commit("echo env")
    work.push()
    result = server.middock("config:set", app, "GREETING=hello there")
    assert "Config saved; redeploying" in result.stdout and "is live" in result.stdout
    assert http_get(port, "/GREETING") == "hello there"
    server.middock("config:unset", app, "GREETING")
    assert http_get(port, "/GREETING") == ""
    assert json.loads(server.middock("config", app, "--json").stdout) == {}


def test_invalid_keys_and_lines_are_refused_with_the_line(server, work, app):
    for bad in ("1ABC=x", "A-B=x", "NOEQUALS"):
        result = server.middock("config:set", app, bad, check=False)
        assert result.returncode != 0 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert json.loads(server.middock("config", app, "--json").stdout) == {}

    write_busybox_app(work, free_port())
    work.write("middock.env", "MIDDOCK_HEALTH_TIMEOUT=5\nthis line is wrong\n")
    work.commit("bad middock.env")
    result = work.push()
    assert "middock.env line 2: cannot parse 'this line is wrong'" in result.stderr
