"""Test fixtures: a real Docker Engine, the real git client, middock run as a user would.

Each test gets its own MIDDOCK_HOME and unique app names (so unique compose projects), and
everything an app started is destroyed afterwards.
"""

from __future__ import annotations

from pathlib import Path

import docker
import pytest
from support.deployment import Deployment
from support.images import BUSYBOX_IMAGE, ensure_busybox_image
from support.middock import Server, Workdir
from support.pebble import Pebble
from support.ports import free_port
from support.postgres import app_addresses, host_gateway, postgres_cluster
from support.rootless import load_image
from support.ssh_server import unique_user, world_readable_dir


@pytest.fixture(scope="session")
def docker_client() -> docker.DockerClient:
    try:
        client = docker.from_env(version="auto")
        client.ping()
    except docker.errors.DockerException as error:
        pytest.exit(f"these tests need a running Docker Engine (run scripts/test.sh): {error}", returncode=3)
    ensure_busybox_image(client)
    return client


@pytest.fixture
def server(tmp_path: Path, docker_client: docker.DockerClient):
    srv = Server(tmp_path / "home")
    yield srv
    srv.cleanup()


@pytest.fixture
def work(tmp_path: Path) -> Workdir:
    return Workdir(tmp_path / "work")


@pytest.fixture
def app(server: Server, work: Workdir) -> str:
    """A created app with `production` pointing at it from the work tree."""
    name = server.create_app()
    work.git("remote", "add", "production", str(server.repo_path(name)))
    return name


@pytest.fixture(scope="session")
def postgres(docker_client: docker.DockerClient):
    """The tests' cluster: listening on the address containers reach as `host.docker.internal`,
    letting in, with a password, whoever connects from middock's networks."""
    settings = [f"listen_addresses = '{host_gateway(docker_client)}'"]
    hba = [f"host all all {subnet} scram-sha-256" for subnet in app_addresses()["from"]]
    with postgres_cluster(docker_client, settings, hba) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def deployment(docker_client: docker.DockerClient):
    """install.sh's deploy user over a real sshd, on its own rootless daemon with the tests' busybox
    image; its modules share one xdist group (`default-ports`), so one worker makes it once."""
    deployment = Deployment(world_readable_dir("middock-ssh-"), unique_user())
    try:
        deployment.start()
        load_image(deployment.user, BUSYBOX_IMAGE)
        yield deployment
    finally:
        deployment.cleanup()


@pytest.fixture
def pebble(tmp_path):
    """Let's Encrypt's test server (the edge tests' ACME), on free ports."""
    acme = Pebble(tmp_path / "pebble", free_port(), free_port())
    acme.start()
    yield acme
    acme.stop()


# --- tiers ---------------------------------------------------------------------------------------------------------

# The fixtures that reach the machine's Docker Engine: docker_client (those built on it, `server`, `app`,
# `postgres`, `debian_base`, `deployment`, …, have it in their closure too), and install.sh's deploy user, whose
# daemon and edge start (`installed` in test_install.py, `deploy` in test_hostile_user.py). Modules whose tests start a
# bed of their own say `pytestmark = pytest.mark.bed`; those that use Docker without these fixtures (the docker
# command, a script) say `pytestmark = pytest.mark.docker`.
DOCKER_FIXTURES = {"docker_client", "installed", "deploy"}
TIERS = {"unit", "docker", "bed"}
# The xdist groups, the longest first (a full run's minutes: 7.7, 5.8, 4.1, 3.6, 3.1, 2.7, 1.6, 1.0, 0.5). With
# `--no-loadscope-reorder` (scripts/test.sh) xdist hands the groups out in the order of the collection, so the
# longest start at once and the single tests fill in around them; by default it would order them by their
# number of tests, and a bed of few long tests could start last and run alone at the end.
LONGEST_FIRST = (
    "zero-drop", "default-ports", "upgrade-bed", "server-bed", "hostile-args", "swarm-bed", "cron", "try-bed",
    "private-dockerd",
)  # fmt: skip


def group_rank(item: pytest.Item) -> int:
    mark = item.get_closest_marker("xdist_group")
    name = (mark.args[0] if mark.args else mark.kwargs.get("name")) if mark else None
    return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test gets one tier: `bed` or `docker` as its module says, else `docker` if its fixtures reach the
    Docker Engine, else `unit`; the groups come first, the longest first."""
    for item in items:
        if not {mark.name for mark in item.iter_markers()} & TIERS:
            fixtures = set(getattr(item, "fixturenames", ()))
            item.add_marker(pytest.mark.docker if fixtures & DOCKER_FIXTURES else pytest.mark.unit)
    items.sort(key=group_rank)  # stable: within a group, and among the single tests, the collection's order
