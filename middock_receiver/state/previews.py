"""A preview app's record: which app and branch it previews, when it was made and last pushed,
and whether its setup command ran. Its name is APP--SLUG, the branch made safe.

The record (`~/.middock/APP--SLUG/preview.json`) is what makes an app a preview; the deploy
reads it for the setup command, and the parent's commands find its previews by it.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import MiddockError
from .apps import APP_NAME, PREVIEW_MARK, App, all_apps, write_atomic

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
    return app.state / "preview.json"


def load(app: App) -> Preview | None:
    """The app's preview record, or None for an app that is not a preview."""
    if app.parent is None:
        return None
    path = record_path(app)
    try:
        stored = json.loads(path.read_text())
        return Preview(**{k: v for k, v in stored.items() if k in Preview.__dataclass_fields__})
    except FileNotFoundError:
        return None
    except (ValueError, TypeError) as error:
        raise MiddockError(f"{path} is not a valid record: {error}; fix or remove it") from None


def save(app: App, preview: Preview) -> None:
    write_atomic(record_path(app), json.dumps(asdict(preview), indent=2) + "\n")


def of_parent(parent: App) -> dict[App, Preview]:
    """The parent's previews, by name."""
    found = {}
    for app in all_apps(parent.home):
        if app.parent == parent.name:
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


def domain_label(app: App) -> str:
    """The preview's name part after APP--: its host name under the parent's preview-domain."""
    return app.name.split(PREVIEW_MARK, 1)[1]
