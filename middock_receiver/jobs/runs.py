"""The record of a job's runs: each run's trigger, start, end, exit code and result, and its
output, the last KEEP per job, in `.middock/APP/cron/JOB/` (N.json and N.out). The job's lock
file there is held for the whole of a run: a start that cannot take it is skipped."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from .. import flock
from ..state import records
from ..state.apps import App, write_atomic
from .cronfile import JOB_NAME

JOB_LABEL = "middock.cron.app"  # on a job's container: the app it runs for

KEEP = 20
RESULTS = RUNNING, SUCCEEDED, FAILED, SKIPPED, TIMED_OUT, INTERRUPTED = (
    "running",
    "succeeded",
    "failed",
    "skipped",
    "timed out",
    "interrupted",
)
TRIGGERS = ("schedule", "cron:run")
PID_MAX = 1 << 22  # the kernel's largest


@dataclass
class Run:
    number: int
    job: str
    trigger: str  # TRIGGERS
    release: int
    started: float
    result: str = RUNNING
    finished: float | None = None
    exit_code: int | None = None
    pid: int | None = None  # of the runner, to tell a run still going from one whose runner died

    @property
    def duration(self) -> float | None:
        return None if self.finished is None else round(self.finished - self.started, 3)


def folder(app: App, job: str) -> Path:
    if not JOB_NAME.match(job):
        raise ValueError(f"invalid job name {job!r}")
    return app.state / "cron" / job


def output_path(app: App, job: str, number: int) -> Path:
    return folder(app, job) / f"{number}.out"


@contextmanager
def exclusive(app: App, job: str) -> Iterator[bool]:
    """Hold the job's lock for a run: yields False when another run holds it."""
    path = folder(app, job)
    path.mkdir(parents=True, exist_ok=True)
    with flock.held(path / "lock", wait=False) as mine:
        yield mine


def begin(app: App, job: str, trigger: str, release: int, result: str = RUNNING) -> Run:
    """Record a new run under the next free number (a skipped start, too, while a run goes on)."""
    path = folder(app, job)
    path.mkdir(parents=True, exist_ok=True)
    number = max((run.number for run in history(app, job)), default=0) + 1
    while True:
        try:
            fd = os.open(path / f"{number}.json", os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        except FileExistsError:
            number += 1
            continue
        os.close(fd)
        break
    now = time.time()
    run = Run(number, job, trigger, release, now, result, now if result != RUNNING else None, pid=os.getpid())
    save(app, run)
    return run


def finish(app: App, run: Run, result: str, exit_code: int | None) -> None:
    run.result, run.exit_code, run.finished = result, exit_code, time.time()
    save(app, run)
    prune(app, run.job)


def save(app: App, run: Run) -> None:
    write_atomic(folder(app, run.job) / f"{run.number}.json", json.dumps(asdict(run), indent=2) + "\n", 0o600)


def load(path: Path) -> Run | None:
    """A run's record, checked field by field; None for one still empty (`begin` claims its
    number first)."""
    try:
        if path.stat().st_size == 0:
            return None
    except FileNotFoundError:  # pruned meanwhile
        return None
    run = records.load(path, Run, lambda run: check_run(run, path))
    if run is not None and run.result == RUNNING and not alive(run.pid):
        run.result = INTERRUPTED
    return run


def check_run(run: Run, path: Path) -> None:
    """As `begin` and `finish` write it: in its job's folder, named by its number."""
    if (path.parent.name, path.name) != (run.job, f"{run.number}.json"):
        raise ValueError(f"it names run {run.number} of job {run.job!r:.60}, not its own")
    if run.trigger not in TRIGGERS or run.result not in RESULTS or run.release < 1:
        raise ValueError(f"trigger {run.trigger!r:.60}, result {run.result!r:.60} or release {run.release} is not one")
    if run.pid is not None and not 0 < run.pid <= PID_MAX:
        raise ValueError(f"pid {run.pid} is not a process id")


def alive(pid: int | None) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def history(app: App, job: str) -> list[Run]:
    """The job's recorded runs, oldest first."""
    path = folder(app, job)
    found = [load(p) for p in path.glob("*.json")] if path.is_dir() else []
    return sorted((run for run in found if run is not None), key=lambda run: run.number)


def jobs_with_runs(app: App) -> list[str]:
    root = app.state / "cron"
    return sorted(p.name for p in root.iterdir() if p.is_dir() and JOB_NAME.match(p.name)) if root.is_dir() else []


def prune(app: App, job: str) -> None:
    """Keep the last KEEP runs of the job (and their output)."""
    for run in history(app, job)[:-KEEP]:
        for suffix in (".json", ".out"):
            (folder(app, job) / f"{run.number}{suffix}").unlink(missing_ok=True)
