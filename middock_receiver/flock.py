"""A file lock held for a while (flock): one holder at a time (or many sharing it), and the
kernel lets go when the holder dies, however it dies. The file is opened read-only (a lock
needs no more), created with `mode` if missing, and never through a symlink.

A lock that processes of other homes or users also take may wait a bounded time: past it, one
error line names the lock and the process that holds it (from /proc/locks), so whoever reads it
knows what to wait for or stop."""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path

from .errors import MiddockError

POLL = 0.05  # seconds between two tries of a lock waited for with a timeout
COMMAND_MAX = 120  # characters of the holder's command line an error shows


@contextlib.contextmanager
def held(
    path: str | os.PathLike,
    mode: int = 0o600,
    shared: bool = False,
    wait: bool = True,
    timeout: float | None = None,
    what: str = "the lock",
) -> Iterator[bool]:
    """Hold the lock of `path`: yields True once held, or, with `wait=False`, False at once when
    another process holds it. With a `timeout` (seconds), waiting longer raises a MiddockError
    saying that `what` (`the crontab lock`) is held, and by which process."""
    fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_NOFOLLOW, mode)
    try:
        operation = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
        if not wait:
            try:
                fcntl.flock(fd, operation | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
        elif timeout is None:
            fcntl.flock(fd, operation)
        else:
            take_within(fd, operation, timeout, f"{what} {os.fspath(path)}")
        yield True
    finally:
        os.close(fd)


def take_within(fd: int, operation: int, timeout: float, named: str) -> None:
    """Take the lock of `fd` within `timeout` seconds, else say who holds it."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, operation | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise MiddockError(f"{named} is held by {holder(fd)} for more than {timeout:g} s: try again") from None
            time.sleep(POLL)


def holder(fd: int) -> str:
    """The process that holds the flock of `fd`'s file, as `pid N (its command line)`."""
    info = os.fstat(fd)
    try:
        pids = flock_holders(Path("/proc/locks").read_text(), info.st_dev, info.st_ino)
    except OSError:
        pids = []
    if not pids:
        return "another process"  # one of another pid namespace, or already gone
    return f"pid {pids[0]} ({command_of(pids[0])})"


def flock_holders(locks: str, device: int, inode: int) -> list[int]:
    """The pids holding an flock on that file, from the text of /proc/locks
    (`1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF`; waiters, marked `->`, left out)."""
    found = []
    for line in locks.splitlines():
        fields = line.split()
        if len(fields) < 6 or fields[1] != "FLOCK":
            continue
        pid, where = fields[4], fields[5].split(":")
        try:
            major, minor, number = int(where[0], 16), int(where[1], 16), int(where[2])
        except (ValueError, IndexError):
            continue
        if (os.makedev(major, minor), number) == (device, inode) and pid.isdigit() and int(pid) > 0:
            found.append(int(pid))
    return found


def command_of(pid: int) -> str:
    """A process's command line as one printable line (it is the holder's to choose: any byte)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "gone"
    return printable(raw.rstrip(b"\0").replace(b"\0", b" ").decode(errors="replace"))


def printable(text: str) -> str:
    """`text` without control characters (each becomes `?`), at most COMMAND_MAX characters."""
    cleaned = "".join(c if c.isprintable() else "?" for c in text)
    return cleaned if len(cleaned) <= COMMAND_MAX else cleaned[: COMMAND_MAX - 1] + "…"
