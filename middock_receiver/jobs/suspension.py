"""Which of an app's jobs are suspended (`cron:suspend`): the app's own choice, kept across
deploys and rollbacks in `.middock/APP/cron-suspended.json`. A suspended job has no crontab
line; `cron:run` still runs it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..state import records
from ..state.apps import App, write_atomic
from .cronfile import JOB_NAME


@dataclass
class Suspension:
    everything: bool = False  # `cron:suspend APP`: every job, those of later releases too
    jobs: set[str] = field(default_factory=set)

    def holds(self, job: str) -> bool:
        return self.everything or job in self.jobs


def path(app: App) -> Path:
    return app.state / "cron-suspended.json"


def load(app: App) -> Suspension:
    """The app's suspension (none without a record), checked as `cron:suspend` writes it."""
    stored = records.read_json(path(app))
    if stored is None:
        return Suspension()
    with records.checked(path(app)):
        if not isinstance(stored, dict):
            raise ValueError("not a JSON object")
        everything, jobs = stored.get("everything", False), stored.get("jobs", [])
        if not isinstance(everything, bool):
            raise ValueError(f"everything is not true or false: {everything!r:.60}")
        if not isinstance(jobs, list) or not all(isinstance(j, str) and JOB_NAME.match(j) for j in jobs):
            raise ValueError("jobs is not a list of job names")
        return Suspension(everything, set(jobs))


def save(app: App, suspension: Suspension) -> None:
    text = json.dumps({"everything": suspension.everything, "jobs": sorted(suspension.jobs)}, indent=2)
    write_atomic(path(app), text + "\n")
