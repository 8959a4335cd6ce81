"""Reading the records middock keeps under a home: releases, jobs, requests, settings, …

They are the deploy user's files: a hand edit, another program or an older middock may have
written them. So each is checked as it is read, with the checks its values had when middock
first took them, and a bad one is one MiddockError naming the file (to fix or remove), never
a value passed on to a command line, a crontab or a proxy's configuration.
"""

from __future__ import annotations

import dataclasses
import errno
import functools
import json
import os
import re
import stat
import types
import typing
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import MiddockError

MAX_BYTES = 1 << 20  # far above any record middock writes
MAX_REASON = 300  # characters of what is wrong with one, in its error line
CONTROL = re.compile(r"[\x00-\x1f\x7f]")  # a newline, a NUL, an escape…

Record = typing.TypeVar("Record")


def invalid(path: Path, reason: object) -> MiddockError:
    text = str(reason)
    shown = text if len(text) <= MAX_REASON else f"{text[:MAX_REASON]}…"
    return MiddockError(f"{path} is not a valid record: {shown}; fix or remove it")


@contextmanager
def checked(path: Path) -> Iterator[None]:
    """Turn a failed check of the record at `path` into one error naming the file."""
    try:
        yield
    except KeyError as error:
        raise invalid(path, f"{error.args[0]!r:.60} is missing") from None
    except (ValueError, TypeError, AttributeError, MiddockError) as error:
        raise invalid(path, error) from None


def read_text(path: Path) -> str | None:
    """The record's text (UTF-8, at most MAX_BYTES); None when there is no such file. Only a
    regular file is read: never through a planted link, never waiting on a pipe."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise invalid(path, "a symbolic link, not a file") from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise invalid(path, "not a regular file")
    with os.fdopen(fd, "rb") as f:
        data = f.read(MAX_BYTES + 1)
    if len(data) > MAX_BYTES:
        raise invalid(path, f"larger than {MAX_BYTES} bytes")
    with checked(path):
        return data.decode()


def read_line(path: Path) -> str | None:
    """A one-line text record, without its newline; None when there is no such file."""
    text = read_text(path)
    if text is None:
        return None
    line = text.removesuffix("\n")
    with checked(path):
        return plain(line, "the line")


def read_json(path: Path) -> object:
    """The record's JSON value; None when there is no such file (a stored `null` is refused)."""
    text = read_text(path)
    if text is None:
        return None
    with checked(path):
        value = json.loads(text)
        if value is None:
            raise ValueError("null")
        return value


def load(path: Path, kind: type[Record], check: Callable[[Record], object] = lambda _: None) -> Record | None:
    """The JSON object at `path` as the dataclass `kind`, each field of its declared type (keys
    it does not declare are left out), then `check`ed; None when there is no such file."""
    stored = read_json(path)
    if stored is None:
        return None
    with checked(path):
        record = typed(kind, stored)
        check(record)
        return record


@functools.cache
def type_hints(kind: type) -> dict[str, object]:
    """A record class's field types, worked out once (a page of 100 apps loads hundreds of records)."""
    return typing.get_type_hints(kind)


def typed(kind: type[Record], stored: object) -> Record:
    """The dataclass `kind` of a JSON object; ValueError for a missing key or a wrong type."""
    if not isinstance(stored, dict):
        raise ValueError("not a JSON object")
    hints = type_hints(kind)
    values = {}
    for field in dataclasses.fields(kind):  # type: ignore[arg-type]
        if field.name in stored:
            if not conforms(stored[field.name], hints[field.name]):
                raise ValueError(f"{field.name} is not {describe(hints[field.name])}: {stored[field.name]!r:.60}")
            values[field.name] = stored[field.name]
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ValueError(f"{field.name} is missing")
    return kind(**values)


def conforms(value: object, hint: object) -> bool:
    """Whether a JSON value is of the type `hint` (str, int, float, bool, None, unions of
    them, list[…] and dict[str, …])."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(conforms(value, arg) for arg in args)
    if origin is list:
        return isinstance(value, list) and all(conforms(item, args[0]) for item in value)
    if origin is dict:
        return isinstance(value, dict) and all(conforms(v, args[1]) for v in value.values())
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(hint, type) and isinstance(value, hint)


def describe(hint: object) -> str:
    return str(hint).replace("typing.", "").replace("NoneType", "null") if not isinstance(hint, type) else hint.__name__


def plain(text: str, what: str) -> str:
    """A text that holds no newline or other control character (it goes into a line of its own
    somewhere: a crontab, a message, a configuration)."""
    if CONTROL.search(text):
        raise ValueError(f"{what} holds a newline or another control character: {text!r:.60}")
    return text
