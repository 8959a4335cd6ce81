"""The one exception type that carries a user-facing message."""

from __future__ import annotations

import errno
import os

FULL_DISK = frozenset({errno.ENOSPC, errno.EDQUOT})


class MiddockError(Exception):
    """A failure to report to the user as one clear line (no traceback)."""


def os_error_line(error: OSError, near: str | os.PathLike | None = None) -> str:
    """One line for a failed write (a full disk, a read-only state folder), no traceback.
    `near`: a path on the disk written to, to say which is full when the error names no file."""
    if error.errno in FULL_DISK:
        path = error.filename or near
        where = f" on {mount_point(path)}" if path else ""
        what = f" to write {error.filename}" if error.filename else ""
        return f"the disk is full{where}: no space left{what} ({error.strerror})"
    return f"cannot write {error.filename or 'a file'}: {error.strerror}"


def mount_point(path: str | os.PathLike) -> str:
    """The file system a path is on (the folder to free space in)."""
    current = os.path.abspath(os.fsdecode(path))
    while not os.path.ismount(current):
        current = os.path.dirname(current)
    return current
