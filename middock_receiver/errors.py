"""The one exception type that carries a user-facing message."""

from __future__ import annotations

import errno
import os

FULL_DISK = frozenset({errno.ENOSPC, errno.EDQUOT})


class MiddockError(Exception):
    """A failure to report to the user as one clear line (no traceback)."""


def one_line(text: str) -> str:
    """`text` as one printable line: line breaks, control characters and bytes that were not
    UTF-8 (Python's surrogate escapes of argv and the environment) shown as escapes, so whatever
    a user typed into a name can neither break the line nor fail to print."""
    return "".join(char if char.isprintable() else escaped(char) for char in text)


def quoted(value: str, limit: int = 80) -> str:
    """A value the user gave, quoted for an error line and cut to `limit` characters."""
    return f"'{one_line(value[:limit])}'" + ("…" if len(value) > limit else "")


def escaped(char: str) -> str:
    """One character as Python would write it in a string (`\\n`, `\\x1b`), a byte as `\\xff`."""
    if 0xDC80 <= ord(char) <= 0xDCFF:  # an undecodable byte, as surrogateescape keeps it
        return f"\\x{ord(char) - 0xDC00:02x}"
    return char.encode("unicode_escape").decode("ascii")


def os_error_line(error: OSError, near: str | os.PathLike | None = None) -> str:
    """One line for a failed write (a full disk, a read-only state folder), no traceback.
    `near`: a path on the disk written to, to say which is full when the error names no file."""
    if error.errno in FULL_DISK:
        path = error.filename or near
        where = f" on {mount_point(path)}" if path else ""
        what = f" to write {error.filename}" if error.filename else ""
        return f"the disk is full{where}: no space left{what} ({error.strerror})"
    if error.strerror is None:  # not the system's (the Docker SDK's connection errors are OSErrors): its own words
        return f"{type(error).__name__}: {error}"
    return f"cannot write {error.filename or 'a file'}: {error.strerror}"


def mount_point(path: str | os.PathLike) -> str:
    """The file system a path is on (the folder to free space in)."""
    current = os.path.abspath(os.fsdecode(path))
    while not os.path.ismount(current):
        current = os.path.dirname(current)
    return current
