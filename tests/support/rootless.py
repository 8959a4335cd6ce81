"""A deploy user's own rootless Docker daemon, as root reaches it in a test: its `docker` command,
an image of the root daemon's loaded into it, and its processes ended with the user."""

from __future__ import annotations

import os
import pwd
import signal
import subprocess
import time
from pathlib import Path

from middock_receiver.server.rootless import socket_path


def docker_as(user: str, *args: str, input: bytes | None = None) -> subprocess.CompletedProcess:
    """`docker ARGS` as the user, on its own daemon (as middock points it there)."""
    host = f"DOCKER_HOST=unix://{socket_path(pwd.getpwnam(user).pw_uid)}"
    return subprocess.run(
        ["runuser", "-u", user, "--", "env", host, "docker", *args], input=input, capture_output=True, cwd="/"
    )


def load_image(user: str, image: str) -> None:
    """An image of the root daemon (the tests' busybox), loaded into the user's daemon."""
    saved = subprocess.run(["docker", "save", image], capture_output=True, check=True).stdout
    loaded = docker_as(user, "load", "-q", input=saved)
    assert loaded.returncode == 0, loaded.stderr


def subordinate_uids(user: str) -> range:
    for line in Path("/etc/subuid").read_text().splitlines():
        name, first, count = line.split(":")
        if name == user:
            return range(int(first), int(first) + int(count))
    return range(0)


def processes_of(uids: set[int]) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:  # ended meanwhile
            continue
        real_uid = int(next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1])
        if real_uid in uids:
            found.append(int(entry.name))
    return found


def end_processes(user: str) -> None:
    """The user's daemon asked to stop (it stops its containers), then whatever is left of the
    user and of its subordinate ids (the containers' processes) killed."""
    uid = pwd.getpwnam(user).pw_uid
    subprocess.run(["pkill", "-TERM", "-u", user, "-x", "rootlesskit"], capture_output=True)
    deadline = time.monotonic() + 30
    while (
        time.monotonic() < deadline
        and subprocess.run(["pgrep", "-u", user, "-x", "rootlesskit"], capture_output=True).returncode == 0
    ):
        time.sleep(0.2)
    uids = {uid, *subordinate_uids(user)}
    for pid in processes_of(uids):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
