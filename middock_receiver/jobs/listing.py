"""An app's scheduled jobs as rows to show (`cron`, `status`, the dashboard): each job's
schedule, next run in the server's time zone, last run and whether it is suspended."""

from __future__ import annotations

import time
from dataclasses import asdict
from datetime import datetime

from ..state.apps import App
from . import cronfile, runs, schedule, suspension
from .cronfile import Job


def local(moment: datetime) -> str:
    """A time in the server's time zone, the one schedules are in."""
    return time.strftime("%Y-%m-%d %H:%M %Z", moment.timetuple())


def job_row(app: App, job: Job, held: suspension.Suspension) -> dict:
    history = runs.history(app, job.name)
    last = history[-1] if history else None
    return {
        "name": job.name,
        "schedule": job.schedule,
        "service": job.service,
        "command": job.command,
        "next_run": None if held.holds(job.name) else local(schedule.parse(job.schedule).next_after(datetime.now())),
        "last_run": asdict(last) if last else None,
        "suspended": held.holds(job.name),
    }


def jobs_table(app: App) -> list[dict]:
    """The live release's jobs (middock.cron), a row each."""
    held = suspension.load(app)
    return [job_row(app, job, held) for job in cronfile.live(app)[1]]
