"""The one exception type that carries a user-facing message."""


class MiddockError(Exception):
    """A failure to report to the user as one clear line (no traceback)."""
