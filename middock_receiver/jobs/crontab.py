"""The deploy user's crontab, where the server's cron daemon finds the jobs: one block of lines
for each app of each middock home, rewritten whole when the app's jobs change; every line
middock did not write is kept byte for byte.

A line calls `middock cron:run APP NAME --scheduled` with the home it was written from; the run
itself (never twice at once, its record) is `operate/job_run.py`'s.
"""

from __future__ import annotations

import os
import pwd
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .. import flock
from ..errors import MiddockError
from ..state import records
from ..state.apps import App
from . import suspension
from .cronfile import Job
from .suspension import Suspension

PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
EXPIRY_FIELDS = "17 4 * * *"  # previews past their preview-ttl: once a day, at a quiet hour
LOCK_WAIT = 30.0  # seconds: a rewrite takes well under one


def marks(home: Path, app: str) -> tuple[str, str]:
    return f"# middock {home} {app}: begin", f"# middock {home} {app}: end"


def job_line(home: Path, app: str, job: Job) -> str:
    return command_line(home, job.fields, ["cron:run", app, job.name, "--scheduled"])


def command_line(home: Path, fields: str, words: list[str]) -> str:
    """`FIELDS COMMAND`, COMMAND a middock command of `home`: cron runs it with /bin/sh, where
    `%` would end the command. No part may hold a newline or another control character, which
    would end the line, whatever check was missed before."""
    unsafe = [text for text in (fields, str(home), *words) if records.CONTROL.search(text)]
    if unsafe:
        raise MiddockError(f"no crontab line can hold {unsafe[0]!r:.80}: it has a newline or another control character")
    python = sys.executable or "python3"
    command = [
        "env",
        f"PATH={Path(python).parent}:{PATH}",
        f"MIDDOCK_HOME={home}",
        python,
        "-I",
        "-m",
        "middock_receiver",
    ]
    text = " ".join(shlex.quote(word) for word in command + words) + " >/dev/null 2>&1"
    return f"{fields} {text.replace('%', chr(92) + '%')}"


def expire_previews_daily(app: App, on: bool) -> None:
    """The daily line that destroys the app's previews past their preview-ttl (or none)."""
    lines = [command_line(app.home, EXPIRY_FIELDS, ["previews:expire", app.name])] if on else []
    install_lines(app.home, f"{app.name} previews", lines)


def with_block(text: str, home: Path, app: str, lines: list[str]) -> str:
    """The crontab `text` with the app's block replaced by `lines` (removed when empty)."""
    begin, end = marks(home, app)
    kept: list[str] = []
    inside = False
    for line in text.splitlines(keepends=True):
        bare = line.rstrip("\n")
        if bare == begin:
            inside = True
        elif bare == end and inside:
            inside = False
        elif not inside:
            kept.append(line)
    if kept and not kept[-1].endswith("\n"):
        kept[-1] += "\n"
    block = [f"{begin}\n", *(f"{line}\n" for line in lines), f"{end}\n"] if lines else []
    return "".join(kept + block)


def apply(app: App, jobs: list[Job]) -> None:
    """The app's block holds the lines of `jobs` (the live release's) but for suspended ones.
    An app that has no jobs and had none leaves the crontab alone (cron need not be installed)."""
    marker = app.state / "cron-installed"
    if not jobs and not marker.exists():
        return
    install(app.home, app.name, jobs, suspension.load(app))
    if jobs:
        marker.touch()
    else:
        marker.unlink(missing_ok=True)


def install(home: Path, app: str, jobs: list[Job], held: Suspension) -> None:
    """Make the app's block hold one line for each of `jobs` that is not suspended."""
    install_lines(home, app, [job_line(home, app, job) for job in jobs if not held.holds(job.name)])


def install_lines(home: Path, block: str, lines: list[str]) -> None:
    """Make the block of that name hold `lines` (none: no block)."""
    if "\n" in str(home):
        raise MiddockError("the middock home's path holds a newline: no crontab line can name it")
    with locked():
        current = read()
        wanted = with_block(current, home, block, lines)
        if wanted != current:
            write(wanted)


def read() -> str:
    result = subprocess.run([program(), "-l"], capture_output=True, text=True, errors="replace")
    if result.returncode != 0:
        if "no crontab" in result.stderr:
            return ""
        raise MiddockError(f"crontab -l failed: {result.stderr.strip() or result.returncode}")
    return result.stdout


def write(text: str) -> None:
    result = subprocess.run([program(), "-"], input=text, capture_output=True, text=True, errors="replace")
    if result.returncode != 0:
        raise MiddockError(f"crontab refused the jobs: {result.stderr.strip() or result.returncode}")


def program() -> str:
    found = shutil.which("crontab")
    if found is None:
        raise MiddockError("the cron daemon is not installed (apt-get install cron): scheduled jobs cannot run")
    return found


@contextmanager
def locked() -> Iterator[None]:
    """One rewrite of this user's crontab at a time, whichever middock home asks: the lock is in
    the user's own home (the crontab is the user's, whatever MIDDOCK_HOME says), where no other
    account can take it first."""
    folder = Path(pwd.getpwuid(os.getuid()).pw_dir) / ".middock"
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
    except OSError as error:
        raise MiddockError(f"cannot make {folder} for the crontab lock: {error.strerror}") from None
    with flock.held(folder / "crontab.lock", timeout=LOCK_WAIT, what="the crontab lock"):
        yield
