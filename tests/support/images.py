"""The tests' small images, built from the host's own binaries (no registry), once per run:
pytest-xdist's workers (and a second test run, or try.sh) share the machine's Docker Engine, so
one builds an image while the others wait for it (`built_once`)."""

from __future__ import annotations

import fcntl
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

import docker

BUSYBOX_IMAGE = "middock-test/busybox"
PSQL_IMAGE = "middock-test/psql"


def built_once(name: str, current: Callable[[], bool], build: Callable[[], None]) -> str:
    """The image `name`: there already when `current()` says so, else built by `build`, one build at
    a time on this machine (whoever waited finds it built)."""
    if current():
        return name
    with open(Path(tempfile.gettempdir()) / f"{name.replace('/', '-')}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not current():
            build()
    return name


def present(client: docker.DockerClient, name: str) -> bool:
    try:
        client.images.get(name)
    except docker.errors.ImageNotFound:
        return False
    return True


def ensure_busybox_image(client: docker.DockerClient) -> None:
    """A 2 MB base image with a shell, wget and httpd: /bin/busybox from busybox-static."""
    built_once(BUSYBOX_IMAGE, lambda: present(client, BUSYBOX_IMAGE), build_busybox_image)


def build_busybox_image() -> None:
    with tempfile.TemporaryDirectory() as ctx:
        shutil.copy("/bin/busybox", Path(ctx) / "busybox")
        (Path(ctx) / "Dockerfile").write_text(
            "FROM scratch\nCOPY busybox /bin/busybox\n"
            'RUN ["/bin/busybox", "--install", "-s", "/bin"]\nCMD ["/bin/sh"]\n'
        )
        subprocess.run(["docker", "build", "-q", "-t", BUSYBOX_IMAGE, ctx], check=True, capture_output=True)


def ensure_psql_image(client: docker.DockerClient) -> None:
    """The busybox image plus the host's own psql binary and the libraries it links (no registry)."""
    built_once(PSQL_IMAGE, lambda: present(client, PSQL_IMAGE), build_psql_image)


def build_psql_image() -> None:
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
