"""Config vars: the server-side dotenv file, merged over the repo's `middock.env` defaults.

Values are kept exactly as given (spaces, quotes, `$`, `#`, `=`, newlines), stored 0600, and
read back with python-dotenv.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from pathlib import Path

from dotenv.parser import parse_stream

from ..errors import MiddockError, quoted
from . import records
from .apps import App, write_atomic

KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
KEY_MAX = 255
# Variables that would change which programs middock runs, or how: an app never sets them. Of
# PYTHON*, those Python itself reads (PYTHONPATH, PYTHONHOME, …): an app's PYTHON_IMAGE is its own.
RESERVED = re.compile(r"(PATH|HOME|MIDDOCK_HOME|LD_\w*|PYTHON[A-Z]*|DOCKER_\w*|COMPOSE_\w*)\Z")
COMPOSE_ALLOWED = frozenset({"COMPOSE_FILE", "COMPOSE_PROFILES"})
RESERVED_NAMES = (
    "PATH, HOME, MIDDOCK_HOME, LD_*, PYTHONPATH and Python's other own, DOCKER_*, COMPOSE_* "
    "(but COMPOSE_FILE, COMPOSE_PROFILES)"
)


def reserved(key: str) -> bool:
    """Whether `key` is middock's own to set, never an app's (config var or middock.env)."""
    return bool(RESERVED.match(key)) and key not in COMPOSE_ALLOWED


def check_name(key: str) -> str:
    if not KEY.match(key) or len(key) > KEY_MAX:
        raise MiddockError(
            f"invalid config key {quoted(key)}: use letters, digits and '_', not starting with a digit, "
            f"at most {KEY_MAX} characters"
        )
    return key


def check_key(key: str) -> str:
    """A key `config:set` may set."""
    if reserved(check_name(key)):
        raise MiddockError(f"{key} cannot be a config var: it would change the programs middock runs: {RESERVED_NAMES}")
    return key


def warn_reserved(sources: dict[str, dict[str, str]], warn: Callable[[str], None]) -> None:
    """Say which of an app's values a deploy ignores (runtime/plan.py leaves them out)."""
    for source, values in sources.items():
        dropped = [key for key in values if reserved(key)]
        if dropped:
            warn(f"{', '.join(dropped)} in {source} ignored: middock's own to set ({RESERVED_NAMES})")


def quote_stored(value: str) -> str:
    """Single quotes as python-dotenv reads them back: only `\\` and `\'` are escapes."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def quote_compose(value: str) -> str:
    """Quotes as Compose's dotenv parser reads them back unchanged (single quotes are literal)."""
    if "'" not in value:
        return f"'{value}'"
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$").replace("\n", "\\n")
    return f'"{escaped}"'


def render(values: dict[str, str], quote: Callable[[str], str] = quote_stored) -> str:
    return "".join(f"{key}={quote(value)}\n" for key, value in values.items())


def parse(text: str, source: str) -> dict[str, str]:
    """Parse dotenv text, refusing anything but `KEY=VALUE` lines, with the line number."""
    values = {}
    for binding in parse_stream(io.StringIO(text)):
        line = binding.original.line
        if binding.error:
            raise MiddockError(f"{source} line {line}: cannot parse {binding.original.string.strip()[:40]!r}")
        if binding.key is None:
            continue
        if not KEY.match(binding.key):
            raise MiddockError(f"{source} line {line}: invalid key {binding.key!r}")
        if binding.value is None:
            raise MiddockError(f"{source} line {line}: {binding.key} has no '=' and value")
        if "\0" in binding.value:
            raise MiddockError(f"{source} line {line}: {binding.key}'s value holds a NUL byte, which no variable can")
        values[binding.key] = binding.value
    return values


def read_vars(app: App) -> dict[str, str]:
    return read_file(app.config_file)


def read_file(path: Path) -> dict[str, str]:
    """A dotenv file middock wrote (the config vars, a release's env), checked as it is read;
    none without the file."""
    text = records.read_text(path)
    if text is None:
        return {}
    with records.checked(path):
        return parse(text, path.name)


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
        values.pop(check_name(key), None)  # a reserved one an older middock let in goes too
    write_vars(app, values)
    return values


def repo_defaults(checkout: Path) -> dict[str, str]:
    path = checkout / "middock.env"
    if not path.is_file():
        return {}
    return parse(path.read_text(errors="replace"), "middock.env")
