"""`middock refresh --rootless`: a deploy user of an install from before rootless mode, whose apps run
on the root daemon (the docker group), moved to its own rootless daemon without losing an app or its
data. The zero-drop move of a stateless app behind the edge, under load, is the upgrade bed's
(test_upgrade.py); here, an app with a named volume, and one the move refuses.
"""

from __future__ import annotations

import json
import os
import pwd
import subprocess
import uuid
from pathlib import Path

import docker
import pytest
from support.apps import WEB_APP_BUILD
from support.deployment import Deployment
from support.images import BUSYBOX_IMAGE
from support.middock import Workdir
from support.ports import free_port
from support.rootless import load_image, subordinate_uids
from support.ssh_server import as_user, unique_user, world_readable_dir
from support.web import http_get

from middock_receiver.cli.server import move_to_own_docker
from middock_receiver.errors import MiddockError
from middock_receiver.migrate import to_rootless
from middock_receiver.server import rootless
from middock_receiver.server.rootless import socket_path
from middock_receiver.state import releases
from middock_receiver.state.apps import App
from middock_receiver.state.releases import Release

PROJECT = "com.docker.compose.project"

# The page is the VERSION of the first release that started: it lives in the volume, in a file owned by
# uid 1234 of the container, so a copy that lost the data or its owner serves another page or none.
STATEFUL_COMPOSE = """services:
  web:
    image: ${MIDDOCK_APP}-web:${IMAGE_TAG}
    environment:
      VERSION: ${VERSION:-unset}
    command:
      - sh
      - -c
      - >-
        [ -f /data/first ] || { echo $$VERSION > /data/first && chown 1234:1234 /data/first; };
        cp /data/first /www/index.html && exec httpd -f -p 8080 -h /www
    volumes: ["data:/data"]
    ports: ["8080:8080"]
    init: true
    stop_grace_period: 1s
volumes:
  data: {}
"""

# A volume whose data is a host folder (a local volume with driver options): the move refuses it.
HOST_FOLDER_COMPOSE = """services:
  web:
    image: ${MIDDOCK_APP}-web:${IMAGE_TAG}
    command: ["sh", "-c", "echo $$VERSION > /www/index.html && exec httpd -f -p 8080 -h /www"]
    environment:
      VERSION: ${VERSION:-unset}
    volumes: ["shared:/shared"]
    ports: ["8080:8080"]
    init: true
    stop_grace_period: 1s
volumes:
  shared:
    driver_opts: {type: none, o: bind, device: /tmp}
"""


@pytest.fixture
def old_install(tmp_path):
    """install.sh's deploy user as an install from before rootless mode left it: in the docker group,
    no daemon of its own."""
    deployment = Deployment(world_readable_dir("middock-move-"), unique_user())
    try:
        deployment.start()
        rootless.stop(pwd.getpwnam(deployment.user))
        socket_path(pwd.getpwnam(deployment.user).pw_uid).unlink(missing_ok=True)
        # with neither a daemon of its own nor the docker group, a command says who starts one
        stranded = as_user(deployment.user, deployment.middock, "networks", check=False)
        assert stranded.returncode == 1 and stranded.stderr.count("\n") == 1, stranded.stderr
        assert "root starts it with `middock refresh --user NAME`" in stranded.stderr, stranded.stderr
        subprocess.run(["usermod", "-aG", "docker", deployment.user], check=True)
        yield deployment
    finally:
        client = docker.from_env()
        for app in deployment.apps:
            for container in client.containers.list(all=True, filters={"label": PROJECT}):
                if container.labels[PROJECT].startswith(app):
                    container.remove(force=True)
            for volume in client.volumes.list():
                if volume.name.startswith(app):
                    volume.remove(force=True)
        deployment.cleanup()


def push_app(deployment: Deployment, work: Workdir, app: str, compose: str, version: str) -> None:
    work.write("docker/build-web.sh", WEB_APP_BUILD, executable=True)
    work.write("www/index.html", "")
    work.write("compose.yaml", compose)
    work.write("middock.env", f"MIDDOCK_WEB=web:8080\nVERSION={version}\n")
    work.commit(version)
    pushed = work.push()
    assert pushed.returncode == 0 and "is live" in pushed.stderr, pushed.stderr


def new_app(deployment: Deployment, tmp_path: Path, compose: str) -> tuple[str, int, Workdir]:
    app, port = deployment.new_app(), free_port()
    assert deployment.alice.run("apps:set", app, "port", str(port)).returncode == 0
    work = Workdir(tmp_path / app)
    work.env["GIT_SSH_COMMAND"] = deployment.alice.git_ssh_command
    work.git("remote", "add", "production", deployment.alice.url(f"{app}.git"))
    push_app(deployment, work, app, compose, "v1")
    return app, port, work


def root_daemon_projects() -> set[str]:
    containers = docker.from_env().containers.list(all=True, filters={"label": PROJECT})
    return {container.labels[PROJECT] for container in containers}


def move(deployment: Deployment) -> subprocess.CompletedProcess:
    argv = [deployment.middock, "refresh", "--rootless", "--user", deployment.user]
    return subprocess.run(argv, capture_output=True, text=True, timeout=600)


def test_the_volumes_to_move_are_those_the_live_release_mounts_by_composes_names(tmp_path):
    app = App("shop", tmp_path)
    release = Release(number=3, commit="a" * 40, ref="refs/heads/main", project="shop_r3")
    folder = releases.folder(app, 3)
    folder.mkdir(parents=True)
    volumes = {
        "data": {"name": "shop_data"},
        "cache": {},
        "shared": {"external": True},
        "old": {"external": True, "name": "pg"},
    }
    (folder / "compose.json").write_text(json.dumps({"services": {}, "volumes": volumes}))
    assert to_rootless.volume_names(app, release) == ["shop_data", "shop_cache", "shared", "pg"]


def test_refresh_rootless_moves_a_deploy_users_apps_only(tmp_path):
    """Root's own apps (no --user) are not a deploy user's: refused in one line before anything starts."""
    with pytest.raises(MiddockError, match="run it as root, with --user NAME"):
        move_to_own_docker(pwd.getpwuid(os.getuid()), tmp_path)


@pytest.mark.docker
@pytest.mark.slow
def test_an_apps_data_moves_with_its_owners_and_a_refused_app_stays_serving(old_install, tmp_path):
    deployment = old_install
    user = deployment.user
    stateful, stateful_port, work = new_app(deployment, tmp_path, STATEFUL_COMPOSE)
    push_app(deployment, work, stateful, STATEFUL_COMPOSE, "v2")
    assert http_get(stateful_port) == "v1\n"  # the volume's, from the first release
    refused, refused_port, _ = new_app(deployment, tmp_path, HOST_FOLDER_COMPOSE)
    assert http_get(refused_port) == "v1\n"

    first = move(deployment)
    assert first.returncode == 1, first.stdout + first.stderr
    assert first.stderr.count("\n") == 1 and refused in first.stderr and "docker group" in first.stderr, first.stderr
    assert f"{refused} was not moved, and serves as before: volume {refused}_shared" in first.stdout, first.stdout
    assert "docker" in as_user(user, "id", "-nG").stdout.split()
    assert http_get(refused_port) == "v1\n"
    held = deployment.alice.run("deploy", refused)
    assert held.returncode == 1 and "refresh --rootless" in held.stderr, held.stderr
    # the stateful app moved: its data and its owner came along
    assert http_get(stateful_port) == "v1\n"
    volume = Path(pwd.getpwnam(user).pw_dir) / f".local/share/docker/volumes/{stateful}_data/_data/first"
    assert volume.stat().st_uid == subordinate_uids(user)[1233], volume.stat()
    assert "rootless move of release 2" in deployment.alice.run("releases", stateful).stdout
    assert not [name for name in root_daemon_projects() if name.startswith(stateful)]

    assert deployment.alice.run("apps:destroy", refused, "--force").returncode == 0
    second = move(deployment)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "left the docker group" in second.stdout, second.stdout
    assert "docker" not in as_user(user, "id", "-nG").stdout.split()
    load_image(user, BUSYBOX_IMAGE)  # the build's base image, which a server pulls again from its registry
    push_app(deployment, work, stateful, STATEFUL_COMPOSE, f"v3-{uuid.uuid4().hex[:4]}")
    assert http_get(stateful_port) == "v1\n"
    rolled = deployment.alice.run("rollback", stateful)
    assert "is live" in rolled.stdout, rolled.stdout + rolled.stderr
    assert http_get(stateful_port) == "v1\n"
