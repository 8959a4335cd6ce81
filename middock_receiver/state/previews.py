"""A preview app's record: which app and branch it previews, when it was made and last pushed,
and whether its setup command ran. Its name is APP--SLUG, the branch made safe.

The record (`~/.middock/APP--SLUG/preview.json`) is what makes an app a preview, and says of
which app (`App.parent`, never split from the name: `shop-`'s preview is `shop---feature`); the
deploy reads it for the setup command, and the parent's commands find its previews by it.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import MiddockError
from ..settings import check_branch
from . import records
from .apps import APP_NAME, PREVIEW_MARK, PREVIEW_RECORD, App, all_apps, write_atomic

MAX_NAME = 63  # an app's name, and the DNS label of a preview's domain
HASH = 6


@dataclass
class Preview:
    parent: str
    branch: str
    created: float = field(default_factory=time.time)
    pushed: float = field(default_factory=time.time)
    setup: int | None = None  # the release whose setup command succeeded


def record_path(app: App) -> Path:
    return app.state / PREVIEW_RECORD


def load(app: App) -> Preview | None:
    """The app's preview record, checked, or None for an app that is not a preview (`App.parent`
    reads and checks its parent)."""
    if app.parent is None:
        return None
    return records.load(record_path(app), Preview, lambda preview: check_branch(preview.branch))


def save(app: App, preview: Preview) -> None:
    write_atomic(record_path(app), json.dumps(asdict(preview), indent=2) + "\n")


def of_parent(parent: App) -> dict[App, Preview]:
    """The parent's previews, by name."""
    found = {}
    for app in all_apps(parent.home):
        if app.name.startswith(f"{parent.name}{PREVIEW_MARK}"):  # may be one of them: its record says
            preview = load(app)
            if preview is not None and preview.parent == parent.name:
                found[app] = preview
    return found


def find(parent: App, branch: str) -> App | None:
    """The preview of `branch`, if there is one."""
    return next((app for app, preview in of_parent(parent).items() if preview.branch == branch), None)


def slug(branch: str) -> str:
    """The branch as a name part: lowercase letters, digits and single '-' (`Feature/X` -> `feature-x`)."""
    return re.sub(r"[^a-z0-9]+", "-", branch.lower()).strip("-") or "branch"


def name_for(parent: str, branch: str, taken: dict[str, str]) -> str:
    """The preview's app name, APP--SLUG; cut to fit with a short hash of the branch when too
    long, or when `taken` (name -> branch) has the name for another branch."""
    room = MAX_NAME - len(parent) - len(PREVIEW_MARK)
    if room < HASH + 2:
        raise MiddockError(f"{parent!r} is too long a name for previews (at most {MAX_NAME - HASH - 4} characters)")
    part = slug(branch)
    name = f"{parent}{PREVIEW_MARK}{part}"
    if len(part) > room or taken.get(name, branch) != branch:
        digest = hashlib.sha256(branch.encode()).hexdigest()[:HASH]
        part = f"{part[: room - HASH - 1].rstrip('-')}-{digest}".lstrip("-")
        name = f"{parent}{PREVIEW_MARK}{part}"
    assert APP_NAME.match(name), name
    return name


def domain_label(parent: str, name: str) -> str:
    """The part of a preview's name after APP--: its host name under the parent's preview-domain."""
    return name.removeprefix(f"{parent}{PREVIEW_MARK}")
