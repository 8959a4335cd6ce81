"""Test fixtures: a real Docker Engine, the real git client, middock run as a user would.

Each test gets its own MIDDOCK_HOME and unique app names (so unique compose projects), and
everything an app started is destroyed afterwards.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

BUSYBOX_IMAGE = "middock-test/busybox"
ROOT = Path(__file__).resolve().parent.parent
GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "Test Author",
    "GIT_AUTHOR_EMAIL": "author@example.com",
    "GIT_COMMITTER_NAME": "Test Author",
    "GIT_COMMITTER_EMAIL": "author@example.com",
}


@pytest.fixture(scope="session")
def docker_client() -> docker.DockerClient:
    try:
        client = docker.from_env(version="auto")
        client.ping()
    except docker.errors.DockerException as error:
        pytest.exit(f"these tests need a running Docker Engine (run scripts/test.sh): {error}", returncode=3)
    ensure_busybox_image(client)
    return client


def ensure_busybox_image(client: docker.DockerClient) -> None:
    """A 2 MB base image with a shell, wget and httpd: /bin/busybox from busybox-static."""
    try:
        client.images.get(BUSYBOX_IMAGE)
        return
    except docker.errors.ImageNotFound:
        pass
    with tempfile.TemporaryDirectory() as ctx:
        shutil.copy("/bin/busybox", Path(ctx) / "busybox")
        (Path(ctx) / "Dockerfile").write_text(
            "FROM scratch\nCOPY busybox /bin/busybox\n"
            'RUN ["/bin/busybox", "--install", "-s", "/bin"]\nCMD ["/bin/sh"]\n'
        )
        subprocess.run(["docker", "build", "-q", "-t", BUSYBOX_IMAGE, ctx], check=True, capture_output=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(port: int, path: str = "/", timeout: float = 10) -> str:
    """The page at 127.0.0.1:port, retried briefly while the server starts."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as response:
                return response.read().decode()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


class Server:
    """middock's side: a MIDDOCK_HOME and the `middock` command run in it."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.env = {**os.environ, "MIDDOCK_HOME": str(home)}
        self.apps: list[str] = []

    def middock(self, *args: str, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [sys.executable, "-m", "middock_receiver", *args],
            env=self.env,
            input=input,
            capture_output=True,
            text=True,
            timeout=600,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"middock {' '.join(args)} exited {result.returncode}:\n{result.stdout}{result.stderr}"
            )
        return result

    def releases(self, app: str) -> list[dict]:
        """`releases APP --json`: the app's release records, oldest first."""
        return json.loads(self.middock("releases", app, "--json").stdout)

    def wait_idle(self, app: str, timeout: float = 60) -> None:
        """Until the app's last deploy has also retired what it replaced (a command returns once
        its release is live; the old one drains and stops after)."""
        deadline = time.monotonic() + timeout
        while json.loads(self.middock("status", app, "--json").stdout)["state"] == "deploying":
            assert time.monotonic() < deadline, f"{app} is still deploying after {timeout}s"
            time.sleep(0.1)

    def create_app(self, prefix: str = "t", *options: str) -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        self.middock("apps:create", name, *options)
        self.apps.append(name)
        return name

    def repo_path(self, app: str) -> Path:
        return self.home / f"{app}.git"

    def start_edge(self, *settings: str) -> tuple[int, int]:
        """Start this home's edge on free ports (and `settings`); returns (http, https) ports."""
        ports = free_port(), free_port()
        self.middock("edge:set", f"http-port={ports[0]}", f"https-port={ports[1]}", *settings)
        self.middock("edge:start")
        self.edge_started = True
        return ports

    def app_port(self, app: str) -> int:
        """The app's own port on the edge."""
        return json.loads((self.home / ".middock" / app / "settings.json").read_text())["port"]

    def cleanup(self) -> None:
        if getattr(self, "edge_started", False):
            self.middock("edge:stop", check=False)
        for app in self.apps:
            if (self.repo_path(app)).exists():
                destroyed = self.middock("apps:destroy", app, "--force", check=False)
                if destroyed.returncode != 0:
                    print(f"cleanup: apps:destroy {app} failed: {destroyed.stderr.strip()}")
            subprocess.run(
                ["docker", "compose", "--project-name", app, "down", "--remove-orphans", "--volumes", "--timeout", "1"],
                capture_output=True,
                cwd=self.home,
            )
            volumes = subprocess.run(  # an app's named volumes outlive it (apps:destroy keeps data), not a test's
                ["docker", "volume", "ls", "-q", "--filter", f"label=com.docker.compose.project={app}"],
                capture_output=True,
                text=True,
            ).stdout.split()
            if volumes:
                subprocess.run(["docker", "volume", "rm", *volumes], capture_output=True)


class Workdir:
    """The developer's side: a git work tree pushed with the real git client."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.env = {**os.environ, **GIT_IDENTITY}
        path.mkdir(parents=True)
        self.git("init", "-q", "-b", "main")

    def git(self, *args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
        result = subprocess.run(
            ["git", *args], cwd=self.path, env=self.env, capture_output=True, text=True, timeout=timeout
        )
        if check and result.returncode != 0:
            raise AssertionError(f"git {' '.join(args)} exited {result.returncode}:\n{result.stdout}{result.stderr}")
        return result

    def write(self, name: str, text: str, executable: bool = False) -> None:
        path = self.path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        path.chmod(0o755 if executable else 0o644)

    def commit(self, message: str) -> str:
        self.git("add", "-A")
        self.git("commit", "-q", "--allow-empty", "-m", message)
        return self.git("rev-parse", "HEAD").stdout.strip()

    def start_push(self, *args: str) -> subprocess.Popen:
        """`git push production …` running on its own, in its own process group (to kill it
        like a vanished pusher); its output, stdout and stderr together, is `communicate()[0]`."""
        return subprocess.Popen(
            ["git", "push", "production", *(args or ("main",))],
            cwd=self.path,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )

    def push(self, *args: str, check: bool = False) -> subprocess.CompletedProcess:
        """`git push production …`; output in .stdout + .stderr as the pusher sees it."""
        return self.git("push", "production", *(args or ("main",)), check=check)


BUILD_WEB = """#!/bin/sh
set -e
echo "building $MIDDOCK_APP-web:$IMAGE_TAG"
ctx=$(mktemp -d)
cp page.html "$ctx/index.html"
cat > "$ctx/Dockerfile" <<'DOCKERFILE'
FROM middock-test/busybox
COPY index.html /www/index.html
CMD ["httpd", "-f", "-p", "8080", "-h", "/www"]
DOCKERFILE
docker build -q -t "$MIDDOCK_APP-web:$IMAGE_TAG" "$ctx"
rm -rf "$ctx"
"""

COMPOSE = """services:
  web:
    image: ${{MIDDOCK_APP}}-web:${{IMAGE_TAG}}
    ports: ["127.0.0.1:{port}:8080"]
    stop_grace_period: 1s
  worker:
    image: middock-test/busybox
    command: ["sleep", "1000000"]
    stop_grace_period: 1s
"""


def write_busybox_app(work: Workdir, port: int, page: str = "v1") -> None:
    """The two-service app of the tests: `web` serves page.html, `worker` sleeps."""
    work.write("docker/build-web.sh", BUILD_WEB, executable=True)
    work.write("compose.yaml", COMPOSE.format(port=port))
    work.write("page.html", page)


WEB_APP_BUILD = """#!/bin/sh
set -e
ctx=$(mktemp -d)
cp -r www "$ctx/www"
cat > "$ctx/Dockerfile" <<'DOCKERFILE'
FROM middock-test/busybox
COPY www /www
CMD ["sh", "-c", "echo \\"$VERSION\\" > /www/index.html && hostname > /www/host.html && exec httpd -f -p 8080 -h /www"]
DOCKERFILE
docker build -q -t "$MIDDOCK_APP-web:$IMAGE_TAG" "$ctx"
rm -rf "$ctx"
"""

SLOW_CGI = """#!/bin/sh
sleep 3
printf 'Content-Type: text/plain\\r\\n\\r\\nslow %s\\n' "$(cat /www/index.html)"
"""

WEB_APP_COMPOSE = """services:
  web:
    image: ${MIDDOCK_APP}-web:${IMAGE_TAG}
    environment:
      VERSION: ${VERSION:-unset}
    ports: ["8080:8080"]
    init: true
    stop_grace_period: 1s
  worker:
    image: middock-test/busybox
    command: ["sleep", "1000000"]
    init: true
    stop_grace_period: 1s
"""


def write_web_app(work: Workdir, version: str = "v1", compose: str = WEB_APP_COMPOSE, settings: str = "") -> None:
    """The tests' app behind the edge: `web` answers its VERSION on / and, after 3 seconds,
    on /cgi-bin/slow (the requests in flight at a switch); `worker` sleeps."""
    work.write("docker/build-web.sh", WEB_APP_BUILD, executable=True)
    work.write("www/cgi-bin/slow", SLOW_CGI, executable=True)
    work.write("compose.yaml", compose)
    work.write("middock.env", f"MIDDOCK_WEB=web:8080\nVERSION={version}\n{settings}")


@pytest.fixture
def server(tmp_path: Path, docker_client: docker.DockerClient):
    srv = Server(tmp_path / "home")
    srv.home.mkdir()
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


PSQL_IMAGE = "middock-test/psql"


def ensure_psql_image(client: docker.DockerClient) -> None:
    """The busybox image plus the host's own psql binary and the libraries it links (no registry)."""
    try:
        client.images.get(PSQL_IMAGE)
        return
    except docker.errors.ImageNotFound:
        pass
    psql = next(Path("/usr/lib/postgresql").glob("*/bin/psql"))
    libs = [
        line.split()[-2]
        for line in subprocess.run(["ldd", str(psql)], capture_output=True, text=True).stdout.splitlines()
        if "/" in line
    ]
    with tempfile.TemporaryDirectory() as ctx:
        for path in [*libs, str(psql)]:
            target = Path(ctx, "root", path.lstrip("/"))
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, target)
        Path(ctx, "root/bin").mkdir(exist_ok=True)
        Path(ctx, "root/bin/psql").symlink_to(str(psql))
        Path(ctx, "root/etc").mkdir()
        Path(ctx, "root/etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
        (Path(ctx) / "Dockerfile").write_text(f"FROM {BUSYBOX_IMAGE}\nCOPY root/ /\n")
        subprocess.run(["docker", "build", "-q", "-t", PSQL_IMAGE, ctx], check=True, capture_output=True)


class Postgres:
    """A PostgreSQL cluster on the host, outside Docker (as the seed keeps databases), listening
    on the Docker bridge address that containers reach as `host.docker.internal`."""

    password = "s3cret-pw-" + uuid.uuid4().hex[:8]

    def __init__(self, bindir: Path, socket_dir: Path, port: int) -> None:
        self.bindir, self.socket_dir, self.port = bindir, socket_dir, port

    @property
    def container_url(self) -> str:
        return f"postgresql://middock:{self.password}@host.docker.internal:{self.port}/postgres"

    def query(self, sql: str, database: str = "postgres") -> str:
        """Run SQL with the host's psql (over the cluster's socket), as its superuser; unaligned output."""
        result = subprocess.run(
            [str(self.bindir / "psql"), "-X", "-qtA", "-v", "ON_ERROR_STOP=1", "-c", sql],
            env={
                **os.environ,
                "PGHOST": str(self.socket_dir),
                "PGPORT": str(self.port),
                "PGUSER": "middock",
                "PGDATABASE": database,
                "PGPASSWORD": self.password,
            },
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout


def host_gateway(client: docker.DockerClient) -> str:
    """The host address Docker gives containers as `host-gateway` (the docker0 bridge's)."""
    hosts = client.containers.run(
        BUSYBOX_IMAGE, ["cat", "/etc/hosts"], extra_hosts={"host.docker.internal": "host-gateway"}, remove=True
    )
    return next(line.split()[0] for line in hosts.decode().splitlines() if line.endswith("host.docker.internal"))


@contextlib.contextmanager
def postgres_cluster(docker_client: docker.DockerClient, settings: list[str], hba: list[str]) -> Iterator[Postgres]:
    """A throwaway cluster (initdb as the postgres user, a free port), with `settings` added to its
    postgresql.conf and `hba` to its pg_hba.conf as an admin adds them; stopped at the end."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not found:
        pytest.exit("these tests need PostgreSQL on the host (run scripts/test.sh)", returncode=3)
    bindir = found[-1].parent
    ensure_psql_image(docker_client)
    base = Path(tempfile.mkdtemp(prefix="middock-pg-"))
    shutil.chown(base, "postgres", "postgres")
    data, port = base / "data", free_port()
    as_postgres = {"user": "postgres", "cwd": base, "capture_output": True, "text": True, "check": True}
    (base / "pw").write_text(Postgres.password)
    shutil.chown(base / "pw", "postgres", "postgres")
    subprocess.run(
        [
            str(bindir / "initdb"),
            "-D",
            str(data),
            "-U",
            "middock",
            "--pwfile",
            str(base / "pw"),
            "-A",
            "scram-sha-256",
            "--no-sync",
        ],
        **as_postgres,
    )
    with open(data / "postgresql.conf", "a") as conf:
        conf.writelines(f"{line}\n" for line in settings)
    with open(data / "pg_hba.conf", "a") as rules:
        rules.writelines(f"{line}\n" for line in hba)
    options = f"-p {port} -k {base} -c fsync=off"
    subprocess.run(
        [str(bindir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(base / "log"), "-w", "start"], **as_postgres
    )
    try:
        yield Postgres(bindir, base, port)
    finally:
        subprocess.run([str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"], **as_postgres)
        shutil.rmtree(base, ignore_errors=True)


def app_addresses() -> dict:
    """`middock networks --json`: the subnets app containers connect from, the host's address."""
    shown = subprocess.run(
        [sys.executable, "-m", "middock_receiver", "networks", "--json"], capture_output=True, text=True, check=True
    )
    return json.loads(shown.stdout)


@pytest.fixture(scope="session")
def postgres(docker_client: docker.DockerClient):
    """The tests' cluster: listening on the address containers reach as `host.docker.internal`,
    letting in, with a password, whoever connects from middock's networks."""
    settings = [f"listen_addresses = '{host_gateway(docker_client)}'"]
    hba = [f"host all all {subnet} scram-sha-256" for subnet in app_addresses()["from"]]
    with postgres_cluster(docker_client, settings, hba) as cluster:
        yield cluster


# --- tiers ---------------------------------------------------------------------------------------------------------

# The fixtures that reach the machine's Docker Engine: docker_client (those built on it, `server`, `app`,
# `postgres`, `debian_base`, …, have it in their closure too), and install.sh's deploy user, in the docker group,
# whose edge starts (`installed` in test_install.py, `deploy` in test_hostile_user.py). Modules whose tests start a
# bed of their own say `pytestmark = pytest.mark.bed`; those that use Docker without these fixtures (the docker
# command, a script) say `pytestmark = pytest.mark.docker`.
DOCKER_FIXTURES = {"docker_client", "installed", "deploy"}
TIERS = {"unit", "docker", "bed"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test gets one tier: `bed` or `docker` as its module says, else `docker` if its fixtures reach the
    Docker Engine, else `unit`."""
    for item in items:
        if not {mark.name for mark in item.iter_markers()} & TIERS:
            fixtures = set(getattr(item, "fixturenames", ()))
            item.add_marker(pytest.mark.docker if fixtures & DOCKER_FIXTURES else pytest.mark.unit)
