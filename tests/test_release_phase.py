"""The release phase (MIDDOCK_RELEASE_COMMAND) and the post-deploy script, end to end: real
pushes, real Docker Engine, and a real PostgreSQL on the host outside Docker."""

from __future__ import annotations

import json
import os
import signal
import subprocess

from support.apps import write_busybox_app
from support.images import PSQL_IMAGE
from support.ports import free_port
from support.web import http_get

# The web image of a Django-style app: `migrate.sh` is its `manage.py migrate`, and the page
# says which migration the web container found in the database when it started.
BUILD_MIGRATING_WEB = f"""#!/bin/sh
set -e
ctx=$(mktemp -d)
cp docker/migrate.sh docker/start.sh "$ctx/"
printf 'FROM {PSQL_IMAGE}\\nCOPY migrate.sh start.sh /app/\\nCMD ["/app/start.sh"]\\n' > "$ctx/Dockerfile"
docker build -q -t "$MIDDOCK_APP-web:$IMAGE_TAG" "$ctx"
rm -rf "$ctx"
"""

MIGRATE = """#!/bin/sh
set -e
echo "migrating for release $RELEASE ($1)"
# what the running `web` serves now (this busybox's wget crashes with -T, so no timeout)
seen=$(wget -qO- http://web:8080/ 2>/dev/null || echo nothing)
psql -X -q -v ON_ERROR_STOP=1 -v release="$RELEASE" -v seen="$seen" "$DATABASE_URL" <<'SQL'
create table if not exists events (id serial primary key, kind text, release int, note text);
insert into events (kind, release, note) values ('migrate', :release, :'seen');
SQL
echo "migrated"
"""

START = """#!/bin/sh
set -e
psql -X -q -v ON_ERROR_STOP=1 "$DATABASE_URL" -c "insert into events (kind, release) values ('web-start', $RELEASE)"
mkdir -p /www
psql -X -tA "$DATABASE_URL" -c "select 'release ' || release || ' migrated while serving: ' || note
    from events where kind = 'migrate' order by id desc limit 1" > /www/index.html
exec httpd -f -p 8080 -h /www
"""

COMPOSE_WITH_DATABASE = """services:
  web:
    image: ${{MIDDOCK_APP}}-web:${{IMAGE_TAG}}
    ports: ["127.0.0.1:{port}:8080"]
    env_file: .env
    environment:
      RELEASE: ${{MIDDOCK_RELEASE}}
    extra_hosts: ["host.docker.internal:host-gateway"]
    stop_grace_period: 1s
"""


def project_containers(client, app: str, oneoff: bool = False) -> set[str]:
    labels = [f"com.docker.compose.project={app}", f"com.docker.compose.oneoff={oneoff}"]
    return {c.id for c in client.containers.list(all=True, filters={"label": labels})}


def test_release_command_migrates_postgres_before_the_new_web_starts(server, work, app, postgres):
    server.middock("config:set", app, f"DATABASE_URL={postgres.container_url}", "--no-deploy")
    port = free_port()
    work.write("docker/build-web.sh", BUILD_MIGRATING_WEB, executable=True)
    work.write("docker/migrate.sh", MIGRATE, executable=True)
    work.write("docker/start.sh", START, executable=True)
    work.write("compose.yaml", COMPOSE_WITH_DATABASE.format(port=port))
    work.write("middock.env", "MIDDOCK_RELEASE_COMMAND='web /app/migrate.sh --noinput'\n")
    work.commit("first version")
    first = work.push()
    assert "-----> Running release command: web /app/migrate.sh --noinput" in first.stderr
    assert "       migrating for release 1 (--noinput)" in first.stderr
    assert postgres.password not in first.stderr
    assert http_get(port) == "release 1 migrated while serving: nothing\n"

    work.commit("second version")
    second = work.push()
    assert "migrating for release 2" in second.stderr and "is live" in second.stderr
    # Release 2 migrated while release 1 was still serving, and its web container started after.
    assert http_get(port) == "release 2 migrated while serving: release 1 migrated while serving: nothing\n"
    events = postgres.query("select kind || ' ' || release from events order by id")
    assert events.splitlines() == ["migrate 1", "web-start 1", "migrate 2", "web-start 2"]

    back = server.middock("rollback", app)
    output = back.stdout + back.stderr
    assert "Not running the release command: a rollback does not run it again, nor undo its migrations" in output
    assert "Running release command" not in output
    # Release 1's web is back, and it finds release 2's migration still applied.
    events = postgres.query("select kind || ' ' || release from events order by id")
    assert events.splitlines()[4:] == ["web-start 1"]
    assert http_get(port) == "release 2 migrated while serving: release 1 migrated while serving: nothing\n"


def test_failing_release_command_fails_the_deploy_and_replaces_nothing(server, work, app, docker_client):
    port = free_port()
    write_busybox_app(work, port, "v1")
    work.commit("first version")
    assert "is live" in work.push().stderr
    serving = project_containers(docker_client, app)

    work.write("page.html", "v2")
    work.write("middock.env", "MIDDOCK_RELEASE_COMMAND=\"web sh -c 'echo checking the schema; exit 5'\"\n")
    work.commit("second version")
    pushed = work.push()
    assert "-----> Running release command: web sh -c 'echo checking the schema; exit 5'" in pushed.stderr
    assert "       checking the schema" in pushed.stderr
    assert (
        " !     Deploy failed: release command `web sh -c 'echo checking the schema; exit 5'` "
        "failed with exit code 5; release 1 (" in pushed.stderr
    )
    assert "docker compose up" not in pushed.stderr
    assert http_get(port) == "v1"
    assert project_containers(docker_client, app) == serving
    assert not project_containers(docker_client, app, oneoff=True)
    history = json.loads(server.middock("releases", app, "--json").stdout)
    assert [(r["number"], r["result"], r["live"]) for r in history] == [(1, "succeeded", True), (2, "failed", False)]

    # From config vars, with a timeout: the one-off container is stopped, nothing is replaced.
    timed = server.middock(
        "config:set", app, "MIDDOCK_RELEASE_COMMAND=worker sleep 60", "MIDDOCK_RELEASE_TIMEOUT=2", check=False
    )
    assert timed.returncode != 0
    assert "did not finish within 2 seconds (MIDDOCK_RELEASE_TIMEOUT) and was stopped" in timed.stdout + timed.stderr
    assert http_get(port) == "v1"
    assert project_containers(docker_client, app) == serving
    assert not project_containers(docker_client, app, oneoff=True)


def test_a_deploy_killed_during_its_release_command_leaves_no_migration_running(server, work, app, docker_client):
    write_busybox_app(work, free_port(), "v1")
    work.write("middock.env", "MIDDOCK_RELEASE_COMMAND='worker sh -c \"echo migrating; sleep 60\"'\n")
    work.commit("a long migration")
    push = subprocess.Popen(
        ["git", "push", "production", "main"], cwd=work.path, env=work.env, stderr=subprocess.PIPE, text=True
    )
    assert push.stderr is not None
    for line in push.stderr:
        if line.split()[-1:] == ["migrating"]:  # the container's own line, not the step naming the command
            break
    deploying = json.loads(server.middock("releases", app, "--json").stdout)[-1]
    os.kill(deploying["pid"], signal.SIGKILL)
    push.communicate(timeout=60)
    assert project_containers(docker_client, app, oneoff=True)  # killing the deploy does not stop Docker's container

    shown = server.middock("status", app)
    assert "stopped its release command, which was still running" in shown.stderr
    assert not project_containers(docker_client, app, oneoff=True)


POST_DEPLOY = """#!/bin/sh
page=$(python3 -c 'import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1]).read().decode())' "$URL")
echo "release=$MIDDOCK_RELEASE previous=$MIDDOCK_PREVIOUS_RELEASE page=$page" >> "$NOTES"
echo "notified"
exit {code}
"""


def test_post_deploy_runs_once_live_and_its_failure_is_only_a_warning(server, work, app, tmp_path):
    port = free_port()
    notes = tmp_path / "notes"
    server.middock("config:set", app, f"NOTES={notes}", f"URL=http://127.0.0.1:{port}/", "--no-deploy")
    write_busybox_app(work, port, "v1")
    work.write("middock.env", "MIDDOCK_POST_DEPLOY=deploy/post.sh\n")
    work.write("deploy/post.sh", POST_DEPLOY.format(code=0), executable=True)
    work.commit("first version")
    first = work.push()
    gate, post = first.stderr.index("web: ok"), first.stderr.index("-----> Running deploy/post.sh")
    assert gate < post < first.stderr.index("-----> Release 1")
    assert "       notified" in first.stderr and "Warning" not in first.stderr

    work.write("page.html", "v2")
    work.write("deploy/post.sh", POST_DEPLOY.format(code=7), executable=True)
    work.commit("second version")
    second = work.push()
    assert " !     Warning: post-deploy script deploy/post.sh failed with exit code 7; the release stays live" in (
        second.stderr
    )
    assert "-----> Release 2" in second.stderr and "is live" in second.stderr
    assert http_get(port) == "v2"
    history = json.loads(server.middock("releases", app, "--json").stdout)
    assert [(r["number"], r["result"], r["live"]) for r in history][-1] == (2, "succeeded", True)
    assert notes.read_text() == "release=1 previous= page=v1\nrelease=2 previous=1 page=v2\n"
