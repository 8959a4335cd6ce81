"""Maintenance mode's page: the one the edge answers an app's every request with (503,
`Retry-After: 60`) while the app is in maintenance (`maintenance:on`).

It is the live release's `maintenance.html`, copied beside the app's edge record when a release
goes live, so that turning maintenance on is one runtime change of HAProxy's map and never a
reload; HAProxy reads the page when it loads its configuration, so a release whose page
changed reloads it once, at its switch. HAProxy loads one configuration for every app, and a
page it cannot load or answer with would stop every app's next change of the edge: so a page is
checked as the bytes HAProxy will send, with their head, before it is installed and again when
the edge reads it, and a page that fails gets the default one instead.
"""

from __future__ import annotations

import errno
import html
import os
import stat
from pathlib import Path

from ..errors import MiddockError
from ..state.apps import App, write_atomic
from . import haproxy

PAGE = "maintenance.html"
MAX_PAGE = next(n for n in range(haproxy.BUFFER, 0, -1) if haproxy.page_fits(n))  # bytes
DEFAULT_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Down for maintenance</title></head>
<body><h1>Down for maintenance</h1><p>{app} is down for maintenance. Please try again in a minute.</p></body>
</html>
"""


def page_path(app: App) -> Path:
    """Where the edge reads the app's page from."""
    return app.state / PAGE


def default_page(app: App) -> bytes:
    return DEFAULT_PAGE.format(app=html.escape(app.name)).encode()


def too_big(length: int) -> str | None:
    if haproxy.page_fits(length):
        return None
    return f"is {length} bytes, over the {MAX_PAGE} the edge can answer with"


def page_problem(data: bytes) -> str | None:
    """Why the edge cannot answer with this page as it is, else None: it must fit HAProxy's
    buffer with its head, and be the UTF-8 text its header says, without NUL bytes."""
    problem = too_big(len(data))
    if problem:
        return problem
    if b"\0" in data:
        return "holds NUL bytes"
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as error:
        return f"is not UTF-8 text (byte {error.start} is not)"
    return None


def read_page(path: Path) -> bytes | None:
    """A page as the edge would load it, checked (MiddockError saying why not); None when there
    is none. Only a regular file is read, never followed through a link, never waited on (a
    FIFO), and never read further than one byte past the limit."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as error:
        raise MiddockError(
            "is a symbolic link" if error.errno == errno.ELOOP else f"cannot be read ({error.strerror})"
        ) from None
    try:
        status = os.fstat(fd)
        if not stat.S_ISREG(status.st_mode):
            raise MiddockError("is not a regular file")
        problem = too_big(status.st_size)
        if problem:
            raise MiddockError(problem)
        data = os.read(fd, MAX_PAGE + 1)  # a regular file: all of it, up to one byte past the limit
    finally:
        os.close(fd)
    problem = page_problem(data)
    if problem:
        raise MiddockError(problem)
    return data


def write_page(app: App, data: bytes) -> None:
    path = page_path(app)
    try:
        installed = read_page(path)
    except MiddockError:
        installed = None
    if installed != data:
        write_atomic(path, data)


def install_page(app: App, checkout: Path) -> str | None:
    """Make the release's page (from its checkout) the app's; returns a warning when the
    release's own page could not be taken and the default one is used instead."""
    try:
        data, problem = read_page(checkout / PAGE), None
    except MiddockError as error:
        data, problem = None, f"{PAGE} {error}: the edge uses the default page"
    write_page(app, data or default_page(app))
    return problem


def edge_page(app: App) -> bytes | None:
    """The app's installed page as the edge loads it, checked again as it is read: one that
    fails (put there by hand) is replaced by the default. None: the app has none yet (live
    since before maintenance mode), or none can be written."""
    try:
        return read_page(page_path(app))
    except MiddockError:
        try:
            write_page(app, default_page(app))
        except OSError:
            return None
        return default_page(app)
