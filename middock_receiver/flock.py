"""A file lock held for a while (flock): one holder at a time (or many sharing it), and the
kernel lets go when the holder dies, however it dies. The file is opened read-only (a lock
needs no more), created with `mode` if missing, and never through a symlink."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator


@contextlib.contextmanager
def held(path: str | os.PathLike, mode: int = 0o600, shared: bool = False, wait: bool = True) -> Iterator[bool]:
    """Hold the lock of `path`: yields True once held, or, with `wait=False`, False at once when
    another process holds it."""
    fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_NOFOLLOW, mode)
    try:
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)
