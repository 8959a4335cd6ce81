"""Release records: numbered from 1, one folder each, written atomically.

`releases/N/release.json` holds what a user asks about (commit, ref, subject, author, who
pushed, times, result) and what rollback needs (the services' image ids); beside it are the
log, the checkout, the resolved compose file and the env. `live` names the release serving.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..settings import digits
from . import records
from .apps import App, write_atomic

RESULTS = DEPLOYING, SUCCEEDED, FAILED, INTERRUPTED = "deploying", "succeeded", "failed", "interrupted"
RETIRED = "retired"  # the stage of a live release once what it replaced has drained and stopped
COMMIT = re.compile(r"[0-9a-f]{40}([0-9a-f]{24})?\Z")  # SHA-1, or SHA-256


@dataclass
class Release:
    number: int
    commit: str
    ref: str
    subject: str = ""
    author: str = ""
    pusher: str = ""
    kind: str = "deploy"  # or "rollback to N"
    started: float = field(default_factory=time.time)
    finished: float | None = None
    result: str = DEPLOYING
    message: str = ""
    pid: int = 0
    images: dict[str, str] = field(default_factory=dict)  # service -> image id
    built: dict[str, str] = field(default_factory=dict)  # image refs the build scripts made -> id
    pruned: bool = False
    stage: str = ""  # the deploy stage reached: checkout, build, release, up, health, switch, drain, retired
    project: str = ""  # its Compose project: the app's name in place, its own beside another (blue/green)
    slot: str = ""  # behind the edge: the slot (blue, green) its web containers fill
    same_as: int | None = None  # a restart or new scale of this release: the same code and config
    pushed: dict[str, str] = field(default_factory=dict)  # on the Swarm: service -> REGISTRY/REPO@sha256:…

    @property
    def duration(self) -> float | None:
        return None if self.finished is None else self.finished - self.started

    @property
    def good(self) -> bool:
        return self.result == SUCCEEDED and not self.pruned


def folder(app: App, number: int) -> Path:
    return app.releases_dir / str(number)


def save(app: App, release: Release) -> None:
    write_atomic(folder(app, release.number) / "release.json", json.dumps(asdict(release), indent=2) + "\n")


def load(app: App, number: int) -> Release | None:
    """The release's record, checked; None for a folder without one (a crash before it was written)."""
    return records.load(folder(app, number) / "release.json", Release, lambda release: check(app, number, release))


def check(app: App, number: int, release: Release) -> None:
    """As a deploy records it; what may reach a command line or the edge is one line of text."""
    if release.number != number:
        raise ValueError(f"it is the record of release {release.number}, in the folder of release {number}")
    if not COMMIT.match(release.commit):
        raise ValueError(f"commit {release.commit!r:.60} is not a commit id")
    if release.result not in RESULTS:
        raise ValueError(f"result {release.result!r:.60} is not one of {', '.join(RESULTS)}")
    if not re.fullmatch(rf"({re.escape(app.name)}(_r[0-9]+)?)?", release.project):
        raise ValueError(f"project {release.project!r:.60} is not one of {app.name}'s")
    for name in ("ref", "pusher", "kind", "stage", "slot"):  # the slot is checked again where the edge takes it
        records.plain(getattr(release, name), name)
    for name in ("images", "built", "pushed"):
        for key, value in getattr(release, name).items():
            records.plain(f"{key} {value}", name)
    if release.same_as is not None and not 0 < release.same_as < number:
        raise ValueError(f"same_as {release.same_as} is not an earlier release")


def numbers(app: App) -> list[int]:
    return numbered(app.releases_dir)


def numbered(folder: Path) -> list[int]:
    """The numbers of `folder`'s entries named by a release number, in order (none if it is missing)."""
    if not folder.is_dir():
        return []
    return sorted(int(path.name) for path in folder.iterdir() if digits(path.name))


def history(app: App) -> list[Release]:
    return [r for r in (load(app, n) for n in numbers(app)) if r is not None]


def allocate(app: App, release: Release) -> Release:
    """Claim the next number (called under the app's deploy lock) and record the release."""
    release.number = (numbers(app) or [0])[-1] + 1
    folder(app, release.number).mkdir(parents=True)
    save(app, release)
    return release


@dataclass(frozen=True)
class Kept:
    """The release a switch replaced, whose containers stay, stopped, until the app's next deploy:
    a rollback to it only starts them again (Compose project `project`)."""

    release: int
    project: str


def kept(app: App) -> Kept | None:
    return records.load(app.state / "kept.json", Kept, lambda found: check_kept(app, found))


def check_kept(app: App, found: Kept) -> None:
    if not re.fullmatch(rf"{re.escape(app.name)}_r[0-9]+", found.project):
        raise ValueError(f"project {found.project!r:.60} is not one of {app.name}'s releases")


def set_kept(app: App, found: Kept | None) -> None:
    if found is None:
        (app.state / "kept.json").unlink(missing_ok=True)
    else:
        write_atomic(app.state / "kept.json", json.dumps(asdict(found)) + "\n")


def live_number(app: App) -> int | None:
    path = app.state / "live"
    line = records.read_line(path)
    if line is None:
        return None
    if not (digits(line) and int(line) > 0):
        raise records.invalid(path, f"{line!r:.60} is not a release number")
    return int(line)


def live(app: App) -> Release | None:
    number = live_number(app)
    return load(app, number) if number else None


def set_live(app: App, number: int | None) -> None:
    if number is None:
        (app.state / "live").unlink(missing_ok=True)
    else:
        write_atomic(app.state / "live", f"{number}\n")


def finish(app: App, release: Release, result: str, message: str = "") -> None:
    release.result = result
    release.message = message
    release.finished = time.time()
    save(app, release)


def previous_good(app: App, live: Release) -> Release | None:
    """The good release before the live one (before what the live one restarted or rescaled),
    not counting restarts and rescales, which run the same code as the release they came from."""
    before = live.same_as or live.number
    for release in reversed(history(app)):
        if release.number < before and release.good and release.same_as is None and has_files(app, release):
            return release
    return None


def has_files(app: App, release: Release) -> bool:
    return folder(app, release.number).joinpath("compose.json").exists()


def retained(app: App, keep: int, current: int) -> tuple[list[Release], list[Release]]:
    """Split finished, unpruned releases into those to keep rollback-able and those to prune.

    Kept: the newest `keep` good releases, the live one, and `current` (the one deploying).
    """
    unpruned = [r for r in history(app) if not r.pruned]
    good = [r for r in unpruned if r.good]
    keep_numbers = {r.number for r in good[-keep:]} | {live_number(app), current}
    running = live(app)  # a rollback that started kept containers runs from their release's files
    if running and (owner := re.search(r"_r([0-9]+)\Z", running.project)):
        keep_numbers.add(int(owner[1]))
    kept = [r for r in unpruned if r.number in keep_numbers]
    dropped = [r for r in unpruned if r.number not in keep_numbers and r.result != DEPLOYING]
    return kept, dropped


def prune_files(app: App, release: Release) -> None:
    """Remove what made a release rollback-able, keeping its record and log for `releases`/`logs`."""
    base = folder(app, release.number)
    for name in ("checkout", "compose.json", "stack.json", "swarm.json", "env"):
        path = base / name
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    release.pruned = True
    save(app, release)


def still_draining(release: Release) -> bool:
    """Whether a live release's deploy ended before it removed what it replaced (a crash)."""
    return release.result == SUCCEEDED and release.stage in ("switch", "drain")


def unsettled(app: App) -> bool:
    """Whether a crashed deploy left anything for recovery (pipeline/recovery.py) to settle: a
    release still recorded as deploying, or the live one still draining. Read without the deploy
    lock: a deploy under way shows as deploying too, and holds the lock."""
    current = live(app)
    return bool(current and still_draining(current)) or any(r.result == DEPLOYING for r in history(app))


def mark_interrupted(app: App) -> list[Release]:
    """Record releases left `deploying` by a crash as interrupted.

    Only call this holding the app's deploy lock: then nothing is deploying.
    """
    found = []
    for release in history(app):
        if release.result == DEPLOYING:
            finish(app, release, INTERRUPTED, f"the deploy process ended during {release.stage or 'its start'}")
            found.append(release)
    return found
