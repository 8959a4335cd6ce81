"""A run of a scheduled job: `cron:run APP NAME`, and the line the crontab holds for each job.

A run is a one-off container of the live release's pinned image for the job's service, with
the release's config vars and networks, like `run` (on the Swarm, a one-off task). Never two
runs of a job at once: the run holds the job's lock, and its container has the job's own name,
so neither a second start (skipped, and recorded as skipped) nor a deploy (which removes only
its releases' own containers, never a one-off) can touch it. A run past MIDDOCK_CRON_TIMEOUT is
stopped and recorded as timed out. A scheduled run that fails or times out tells the app's
webhooks (`cron-failed`, notify/).
"""

from __future__ import annotations

import os
import sys

from .. import process, settings
from ..errors import MiddockError
from ..jobs import cronfile, runs
from ..jobs.cronfile import Job
from ..notify import announce as notify
from ..output import Output, open_appending
from ..pipeline import publish, stacks
from ..runtime import compose, swarm
from ..runtime.engine import docker, docker_client
from ..runtime.plan import without_git
from ..state import config, releases
from ..state.apps import App


def job_named(app: App, name: str) -> tuple[releases.Release, Job]:
    live, jobs = cronfile.live(app)
    if live is None:
        raise MiddockError(f"{app.name} has no live release, and so no jobs; deploy it first")
    for job in jobs:
        if job.name == name:
            return live, job
    listed = ", ".join(job.name for job in jobs) or f"none: release {live.number} has no {cronfile.FILE}"
    raise MiddockError(f"{app.name} has no job {name!r} (its jobs: {listed})")


def container_name(app: App, job: str) -> str:
    return f"{app.name}-cron-{job}"


def run(app: App, name: str, scheduled: bool) -> int:
    """Run the job now; its exit code. Output goes to the run's record, and for `cron:run`
    to our stdout as it comes."""
    live, job = job_named(app, name)
    trigger = "schedule" if scheduled else "cron:run"
    with runs.exclusive(app, name) as mine:
        client = docker_client()
        if not mine or still_running(client, container_name(app, name)):
            skipped = runs.begin(app, name, trigger, live.number, runs.SKIPPED)
            raise MiddockError(
                f"job {name} of {app.name} is still running: this start (run {skipped.number}) is skipped"
            )
        record = runs.begin(app, name, trigger, live.number)
        with open_appending(runs.output_path(app, name, record.number)) as kept:
            out = Output(kept, *([] if scheduled else [sys.stdout.buffer]))
            out.mask(list(config.read_vars(app).values()))
            try:
                timeout = settings.env_value(stacks.release_env(app, live), "MIDDOCK_CRON_TIMEOUT")
                code, timed_out = start(client, app, live, job, out, timeout)
            except MiddockError as error:
                out.error(str(error))
                runs.finish(app, record, runs.FAILED, None)
                if scheduled:
                    notify.job_failed(app, live, record, str(error))
                return 1
            if timed_out:
                out.error(f"stopped after {timeout:g}s (MIDDOCK_CRON_TIMEOUT)")
        result = runs.TIMED_OUT if timed_out else runs.SUCCEEDED if code == 0 else runs.FAILED
        runs.finish(app, record, result, code)
        if scheduled and result != runs.SUCCEEDED:
            notify.job_failed(app, live, record)
        return 1 if timed_out and code == 0 else code


def start(
    client: docker.DockerClient, app: App, live: releases.Release, job: Job, out: Output, timeout: float
) -> tuple[int, bool]:
    """Run the job's container (task) to its end; its exit code, and whether it timed out."""
    if stacks.on_swarm(app, live):
        project = stacks.project(app, live)
        try:
            code, output = swarm.run_job(
                publish.with_pull_password(client, app), project, job.service, live.pushed[job.service], job.command,
                timeout,
            )  # fmt: skip
        except swarm.JobTimeout:
            return 124, True
        out.write(output.decode("utf-8", errors="replace"))
        return code, False
    stack = stacks.release_stack(app, compose.compose_program(), live)
    name = container_name(app, job.name)
    env = {**without_git(os.environ), "COMPOSE_PROJECT_NAME": app.name}
    argv = stack.run(job.service, job.command, name, {runs.JOB_LABEL: app.name})
    result = process.stream(argv, lambda line: out.write(f"{line}\n"), env, stack.directory, timeout)
    if result.timed_out:
        remove(client, name)
    return result.returncode, result.timed_out


def still_running(client: docker.DockerClient, name: str) -> bool:
    """Whether the job's container runs (its runner was killed, not it); a stopped one left
    behind is removed, so the name is free for this run."""
    try:
        container = client.containers.get(name)
    except docker.errors.NotFound:
        return False
    if container.status == "running":
        return True
    remove(client, name)
    return False


def remove(client: docker.DockerClient, name: str) -> None:
    try:
        client.containers.get(name).remove(force=True)
    except docker.errors.NotFound:
        pass
    except docker.errors.APIError as error:
        if error.status_code != 409:  # 409: its removal is under way already (`compose run --rm` ending)
            raise
