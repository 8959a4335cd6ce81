"""Who did what: one JSON line per command that changed something.

Each line holds the time, who asked (an SSH key's name and fingerprint, set by the dispatcher, or
the local user: `root`), the command, its app and how it ended. The log is root's where install.sh
made it, `/var/log/middock/audit-USER.log`: root owns it, the user's group may append to it (the
file is append-only, `chattr +a`) and read it, so neither the user nor a key's build script can
rewrite or remove a line; logrotate rotates it. A home without one (a home of root's, an install
from before) has its own, `~/.middock/audit.log`, 0600, which middock rotates itself: past
MAX_BYTES it becomes `audit.log.1` (and that one `.2`, up to KEPT files), under a lock.
"""

from __future__ import annotations

import getpass
import json
import os
import pwd
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from .. import flock

ROOT_LOGS = Path("/var/log/middock")  # install.sh's folder of the deploy users' logs (root's)
MAX_BYTES = 1_000_000
KEPT = 3  # rotated files kept beside the current one (install.sh's logrotate keeps as many)
FIELD_MAX = 300  # characters of one field (a result's error line, a command's words)


@dataclass(frozen=True)
class Entry:
    time: float
    actor: str
    fingerprint: str
    command: str
    app: str | None
    result: str


def log_path(home: Path) -> Path:
    """The log of the home's user: root's, where install.sh made it, else the home's own."""
    try:
        owner = pwd.getpwuid(home.stat().st_uid).pw_name
    except (KeyError, OSError):
        owner = None
    roots = ROOT_LOGS / f"audit-{owner}.log"
    return roots if owner and roots.is_file() else home / ".middock" / "audit.log"


def actor() -> tuple[str, str]:
    """(who, fingerprint): the SSH key of this session, else the local user (`root`, or `NAME (local)`)."""
    key = os.environ.get("MIDDOCK_PUSHER")
    if key:
        return key, os.environ.get("MIDDOCK_KEY_FINGERPRINT", "")
    return ("root" if os.getuid() == 0 else f"{getpass.getuser()} (local)"), ""


def entry(command: str, app: str | None, result: str, who: tuple[str, str] | None = None) -> Entry:
    name, fingerprint = who or actor()
    return Entry(time.time(), name, fingerprint, command[:FIELD_MAX], app, result[:FIELD_MAX])


def append(home: Path, line: Entry) -> None:
    """Add `line` to the home's audit log in one write (appends never interleave); the home's own
    log is rotated first when it is full (root's is logrotate's)."""
    path = log_path(home)
    text = (json.dumps(asdict(line), ensure_ascii=False) + "\n").encode()
    if path.parent == ROOT_LOGS:
        write_line(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW), text)
        return
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with flock.held(path.with_name("audit.lock"), timeout=10, what="the audit log's lock"):
        if path.exists() and path.stat().st_size >= MAX_BYTES:
            rotate(path)
        write_line(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600), text)


def write_line(fd: int, text: bytes) -> None:
    try:
        os.write(fd, text)
    finally:
        os.close(fd)


def rotate(path: Path) -> None:
    for number in range(KEPT, 0, -1):
        older = path.with_name(f"{path.name}.{number}")
        newer = path.with_name(f"{path.name}.{number - 1}") if number > 1 else path
        if newer.exists():
            newer.replace(older)


def read(home: Path, app: str | None = None, count: int = 20) -> list[Entry]:
    """The last `count` lines (of `app` only, if given), oldest first, across the rotated files;
    a line that is not one of ours is skipped."""
    path = log_path(home)
    found: list[Entry] = []
    for file in [path] + [path.with_name(f"{path.name}.{n}") for n in range(1, KEPT + 1)]:
        try:
            lines = file.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            continue
        older = [parsed for parsed in map(parse, lines) if parsed and (app is None or parsed.app == app)]
        found = older + found
        if len(found) >= count:
            break
    return found[-count:] if count > 0 else []


def parse(text: str) -> Entry | None:
    try:
        return Entry(**json.loads(text))
    except (ValueError, TypeError):
        return None
