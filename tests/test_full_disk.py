"""A push when the disk under the deploy user's home is full, on a small tmpfs home: one line
says so and where, the live release keeps serving, nothing half-written is left, and the next
push after space is freed goes live."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from support.apps import write_busybox_app
from support.middock import Server, Workdir
from support.ports import free_port
from support.web import http_get

from middock_receiver.errors import os_error_line

ROOM = 256 * 1024  # left free: the push's objects fit, its checkout does not


@pytest.fixture
def small_home(tmp_path: Path, docker_client):
    home = tmp_path / "small"
    home.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m,mode=755", "tmpfs", str(home)], check=True)
    server = Server(home)
    try:
        yield server
    finally:
        server.cleanup()
        subprocess.run(["umount", "-l", str(home)], check=False)


def fill(folder: Path, leave: int) -> Path:
    """A file that takes all the free space of folder's file system but `leave` bytes."""
    stats = os.statvfs(folder)
    filler = folder / "filler"
    with open(filler, "wb") as f:
        f.write(b"x" * max(stats.f_bavail * stats.f_frsize - leave, 0))
    return filler


def test_a_full_disk_fails_the_push_in_one_line_and_the_next_push_goes_live(small_home: Server, tmp_path: Path):
    server, port = small_home, free_port()
    app = server.create_app()
    work = Workdir(tmp_path / "work")
    work.git("remote", "add", "production", str(server.repo_path(app)))
    write_busybox_app(work, port, "v1")
    work.commit("v1")
    assert "is live" in work.push().stderr
    assert http_get(port) == "v1"

    filler = fill(server.home, ROOM)
    write_busybox_app(work, port, "v2")
    work.write("data/zeros.bin", "\0" * (4 * 1024 * 1024))  # a few kB in git, 4 MB checked out
    work.commit("v2 with data")
    full = work.push()
    errors = [line for line in full.stderr.splitlines() if " !     " in line]
    assert len(errors) == 1 and f"the disk is full on {server.home}" in errors[0], full.stderr
    assert http_get(port) == "v1"
    history = server.releases(app)
    assert [r["result"] for r in history] == ["succeeded", "failed"], history
    assert not (server.home / ".middock" / app / "releases" / "2" / "checkout").exists()
    assert json.loads(server.middock("status", app, "--json").stdout)["state"] == "live"

    filler.unlink()
    write_busybox_app(work, port, "v3")
    work.commit("v3")
    assert "is live" in work.push().stderr
    assert http_get(port) == "v3"
    assert json.loads(server.middock("status", app, "--json").stdout)["state"] == "live"


def test_an_os_error_that_is_not_the_systems_is_said_in_its_own_words():
    """The Docker SDK's connection errors are OSErrors with no errno: never `cannot write a file: None`."""
    assert os_error_line(OSError(28, "No space left on device", "/x")).startswith("the disk is full")
    assert os_error_line(OSError("('Connection aborted.', RemoteDisconnected())")) == (
        "OSError: ('Connection aborted.', RemoteDisconnected())"
    )
