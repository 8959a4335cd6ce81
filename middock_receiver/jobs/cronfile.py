"""`middock.cron`: the jobs a release declares, one a line `NAME SCHEDULE SERVICE COMMAND…`.

Checked against the release's services before anything starts, and kept with the release
(`cron.json` in its folder) so that the release that goes live, a rollback's included, brings
its own jobs. COMMAND is split as a shell splits words, and no shell runs it.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Collection
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import MiddockError
from ..state import records, releases
from ..state.apps import App
from ..state.processes import SERVICE_NAME
from .schedule import ScheduleError
from .schedule import parse as parse_schedule

FILE = "middock.cron"
KEPT = "cron.json"  # in the release's folder
JOB_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,39}\Z")


@dataclass(frozen=True)
class Job:
    name: str
    schedule: str  # as written
    fields: str  # the five fields of its crontab line
    service: str
    command: list[str]
    line: int


def parse(text: str, services: Collection[str]) -> list[Job]:
    """Every job of the file; the first bad line is one MiddockError naming the file and line."""
    jobs: dict[str, Job] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            job = parse_line(line, number, services)
        except (ScheduleError, ValueError) as error:
            raise MiddockError(f"{FILE} line {number}: {error}") from None
        if job.name in jobs:
            raise MiddockError(f"{FILE} line {number}: job {job.name!r} is already on line {jobs[job.name].line}")
        jobs[job.name] = job
    return list(jobs.values())


def parse_line(line: str, number: int, services: Collection[str]) -> Job:
    name, *rest = line.split()
    if not JOB_NAME.match(name):
        raise ValueError(
            f"invalid job name {name!r}: use lowercase letters, digits, '-' and '_', "
            "starting with a letter or digit, at most 40 characters"
        )
    count = 1 if rest and rest[0].startswith("@") else 5  # words of the schedule
    words = line.split(None, count + 2)  # the name, the schedule, the service, the command's text
    schedule = parse_schedule(" ".join(words[1 : 1 + count]))
    service, command_text = (words[1 + count :] + ["", ""])[:2]
    if not service:
        raise ValueError(f"job {name!r} names no service: NAME SCHEDULE SERVICE COMMAND…")
    if service not in services or not SERVICE_NAME.match(service):
        raise ValueError(f"unknown service {service!r} (the compose file has: {', '.join(sorted(services))})")
    command = shlex.split(command_text, comments=True)
    if not command:
        raise ValueError(f"job {name!r} has no command: NAME SCHEDULE SERVICE COMMAND…")
    return Job(name, schedule.text, schedule.fields, service, command, number)


def read(checkout: Path, services: Collection[str]) -> list[Job]:
    """The jobs of a checked-out release; none without a middock.cron."""
    path = checkout / FILE
    if not path.is_file():
        return []
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        raise MiddockError(f"{FILE} is not UTF-8 text") from None
    return parse(text, services)


def save(folder: Path, jobs: list[Job]) -> None:
    (folder / KEPT).write_text(json.dumps([asdict(job) for job in jobs], indent=2) + "\n")


def load(folder: Path) -> list[Job]:
    """The jobs kept with a release (none for a release from before scheduled jobs), each
    checked as `parse` checked it: the file is the deploy user's, and its fields become a
    crontab line."""
    path = folder / KEPT
    stored = records.read_json(path)
    if stored is None:
        return []
    with records.checked(path):
        if not isinstance(stored, list):
            raise ValueError("not a list of jobs")
        jobs = [check_kept(records.typed(Job, fields)) for fields in stored]
        if len({job.name for job in jobs}) != len(jobs):
            raise ValueError("a job name is there twice")
        return jobs


def check_kept(job: Job) -> Job:
    """A kept job as `parse_line` makes it."""
    if not JOB_NAME.match(job.name):
        raise ValueError(f"invalid job name {job.name!r:.60}")
    schedule = parse_schedule(job.schedule)
    if (schedule.text, schedule.fields) != (job.schedule, job.fields):
        raise ValueError(
            f"job {job.name!r}: its fields {job.fields!r:.60} are not those of its schedule {job.schedule!r:.60}"
        )
    if not SERVICE_NAME.match(job.service):
        raise ValueError(f"job {job.name!r}: invalid service name {job.service!r:.60}")
    if not job.command or any("\0" in word for word in job.command):
        raise ValueError(f"job {job.name!r}: its command is empty or holds a NUL byte")
    if job.line < 1:
        raise ValueError(f"job {job.name!r}: line {job.line} is not a line number")
    return job


def live(app: App) -> tuple[releases.Release | None, list[Job]]:
    """The live release and its jobs: the ones that run."""
    release = releases.live(app)
    return release, load(releases.folder(app, release.number)) if release else []
