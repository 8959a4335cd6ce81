"""The one exception type that carries a user-facing message."""


class MiddockError(Exception):
    """A failure to report to the user as one clear line (no traceback)."""


def os_error_line(error: OSError) -> str:
    """One line for a failed write (a full disk, a read-only state folder), no traceback."""
    return f"cannot write {error.filename or 'a file'}: {error.strerror}"
