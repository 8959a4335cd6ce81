"""A PostgreSQL cluster on the host for the apps' containers to reach."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from support.images import BUSYBOX_IMAGE, ensure_psql_image
from support.ports import free_port


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
    """`middock networks --json` of root's own apps (the root daemon): the subnets app containers connect from,
    the host's address."""
    shown = subprocess.run(
        [sys.executable, "-m", "middock_receiver", "networks", "--json", "--user", "root"],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(shown.stdout)
