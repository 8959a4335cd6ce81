"""Scheduled jobs (middock.cron): cron, cron:run, cron:runs, cron:output, cron:suspend and
cron:resume."""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict

from ..errors import MiddockError
from ..jobs import cronfile, crontab, runs, suspension
from ..jobs.listing import jobs_table
from ..state.apps import App
from .commands import argument, command, emit_json, when


@command("cron", "the live release's scheduled jobs (middock.cron): next run, last run", json=True)
def cmd_cron(args: argparse.Namespace) -> int:
    app = App.named(args.app).require()
    rows = jobs_table(app)
    if args.json:
        return emit_json(rows)
    if not rows:
        print(f"{app.name} has no scheduled jobs (add a middock.cron to the repository)")
    for row in rows:
        last = row["last_run"]
        ran = f"{when(last['started'])} {last['result']}" if last else "never"
        upcoming = "suspended" if row["suspended"] else row["next_run"]
        print(f"{row['name']:<16} {row['schedule']:<16} {row['service']:<12} next {upcoming}; last {ran}")
        print(f"{'':<16} {' '.join(row['command'])}")
    return 0


@command("cron:run", "run a job now: its output streams, its exit code is returned")
@argument("name")
@argument("--scheduled", action="store_true", help=argparse.SUPPRESS)  # the crontab's lines
def cmd_cron_run(args: argparse.Namespace) -> int:
    from ..operate.job_run import run

    return run(App.named(args.app).require(), args.name, args.scheduled)


@command("cron:runs", "recent runs of the app's jobs (or of one)", json=True)
@argument("name", nargs="?")
def cmd_cron_runs(args: argparse.Namespace) -> int:
    app = App.named(args.app).require()
    names = runs.jobs_with_runs(app) if args.name is None else [known_job(app, args.name)]
    found = [run for name in names for run in runs.history(app, name)]
    rows = [asdict(run) | {"duration": run.duration} for run in sorted(found, key=lambda run: run.started)]
    if args.json:
        return emit_json(rows)
    for row in rows:
        took = "" if row["duration"] is None else f" in {row['duration']:.1f}s"
        code = "" if row["exit_code"] is None else f" (exit {row['exit_code']})"
        started = when(row["started"])
        print(f"{row['job']:<16} #{row['number']:<4} {started}  {row['trigger']:<8}  {row['result']}{code}{took}")
    if not rows:
        print("no runs yet")
    return 0


@command("cron:output", "the output of a job's run (default: its latest)")
@argument("name")
@argument("run", nargs="?", type=int)
def cmd_cron_output(args: argparse.Namespace) -> int:
    app = App.named(args.app).require()
    history = runs.history(app, known_job(app, args.name))
    chosen = [run for run in history if args.run in (None, run.number)]
    if not chosen:
        missing = f"no run {args.run}" if args.run else "not run yet"
        raise MiddockError(f"job {args.name} of {app.name} has {missing}")
    path = runs.output_path(app, args.name, chosen[-1].number)
    sys.stdout.buffer.write(path.read_bytes() if path.exists() else b"")
    return 0


@command("cron:suspend", "hold the scheduled runs of every job (or of one), across deploys")
@argument("name", nargs="?")
def cmd_cron_suspend(args: argparse.Namespace) -> int:
    return hold(App.named(args.app).require(), args.name, True)


@command("cron:resume", "let suspended jobs (or one) run on schedule again")
@argument("name", nargs="?")
def cmd_cron_resume(args: argparse.Namespace) -> int:
    return hold(App.named(args.app).require(), args.name, False)


def hold(app: App, name: str | None, suspend: bool) -> int:
    jobs = cronfile.live(app)[1]
    held = suspension.load(app)
    if name is None:
        held = suspension.Suspension(everything=suspend)
    else:
        known_job(app, name)
        if held.everything and not suspend:
            held = suspension.Suspension(jobs={job.name for job in jobs})
        (held.jobs.add if suspend else held.jobs.discard)(name)
    suspension.save(app, held)
    crontab.apply(app, jobs)
    what = f"job {name}" if name else "every job"
    print(f"-----> {what.capitalize()} of {app.name} {'suspended' if suspend else 'resumed'}")
    return 0


def known_job(app: App, name: str) -> str:
    """`name`, if the live release has that job or it has runs on record; else one clear line."""
    if name in runs.jobs_with_runs(app) or any(job.name == name for job in cronfile.live(app)[1]):
        return name
    raise MiddockError(f"{app.name} has no job {name!r}")
