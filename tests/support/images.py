"""The tests' small images, built from the host's own binaries (no registry)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import docker

BUSYBOX_IMAGE = "middock-test/busybox"


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
