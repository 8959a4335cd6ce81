"""Maintenance mode's page: the one the edge answers an app's every request with (503,
`Retry-After: 60`) while the app is in maintenance (`maintenance:on`).

It is the live release's `maintenance.html`, copied beside the app's edge record when a release
goes live, so that turning maintenance on is one runtime change of HAProxy's map and never a
reload; HAProxy reads the page when it loads its configuration, so a release whose page
changed reloads it once, at its switch. A page too big for HAProxy's buffer gets the default.
"""

from __future__ import annotations

import html
from pathlib import Path

from ..state.apps import App, write_atomic

PAGE = "maintenance.html"
MAX_PAGE = 12 * 1024  # HAProxy answers from one buffer (16 kB with the headers)
DEFAULT_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Down for maintenance</title></head>
<body><h1>Down for maintenance</h1><p>{app} is down for maintenance. Please try again in a minute.</p></body>
</html>
"""


def page_path(app: App) -> Path:
    """Where the edge reads the app's page from."""
    return app.state / PAGE


def install_page(app: App, checkout: Path) -> str | None:
    """Make the release's page (from its checkout) the app's; returns a warning when the
    release's own page could not be taken and the default one is used instead."""
    source = checkout / PAGE
    text, problem = DEFAULT_PAGE.format(app=html.escape(app.name)), None
    if source.is_file() and not source.is_symlink():
        data = source.read_bytes()
        if len(data) > MAX_PAGE:
            problem = f"{PAGE} is {len(data)} bytes, over {MAX_PAGE}, too big for the edge: using the default page"
        else:
            text = data.decode("utf-8", errors="replace")
    path = page_path(app)
    if not path.exists() or path.read_text(errors="replace") != text:
        write_atomic(path, text)
    return problem
