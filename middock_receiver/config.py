"""Config vars: the server-side dotenv file, merged over the repo's `middock.env` defaults.

Values are kept exactly as given (spaces, quotes, `$`, `#`, `=`, newlines), stored 0600, and
read back with python-dotenv.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

from dotenv import dotenv_values

from .apps import App, write_atomic
from .errors import MiddockError

KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def check_key(key: str) -> str:
    if not KEY.match(key):
        raise MiddockError(f"invalid config key {key!r}: use letters, digits and '_', not starting with a digit")
    return key


def quote(value: str) -> str:
    """Quote a value so that both python-dotenv and Compose read it back unchanged."""
    if "'" not in value:
        return f"'{value}'"
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$").replace("\n", "\\n")
    return f'"{escaped}"'


def render(values: dict[str, str]) -> str:
    return "".join(f"{key}={quote(value)}\n" for key, value in values.items())


def parse(text: str, source: str) -> dict[str, str]:
    """Parse dotenv text, refusing lines that are not `KEY=VALUE` with the line number."""
    values = dotenv_values(stream=io.StringIO(text), interpolate=False)
    for key, value in values.items():
        if value is None or not KEY.match(key):
            number = next((i for i, line in enumerate(text.splitlines(), 1) if line.strip().startswith(key)), "?")
            raise MiddockError(f"{source} line {number}: expected KEY=VALUE, got {key!r}")
    return dict(values)  # type: ignore[arg-type]


def read_vars(app: App) -> dict[str, str]:
    if not app.config_file.exists():
        return {}
    return parse(app.config_file.read_text(), "config")


def write_vars(app: App, values: dict[str, str]) -> None:
    write_atomic(app.config_file, render(values), mode=0o600)


def set_vars(app: App, assignments: list[str]) -> dict[str, str]:
    values = read_vars(app)
    for assignment in assignments:
        key, sep, value = assignment.partition("=")
        if not sep:
            raise MiddockError(f"expected KEY=VALUE, got {assignment!r}")
        values[check_key(key)] = value
    write_vars(app, values)
    return values


def unset_vars(app: App, keys: list[str]) -> dict[str, str]:
    values = read_vars(app)
    for key in keys:
        values.pop(check_key(key), None)
    write_vars(app, values)
    return values


def repo_defaults(checkout: Path) -> dict[str, str]:
    path = checkout / "middock.env"
    if not path.is_file():
        return {}
    return parse(path.read_text(errors="replace"), "middock.env")
