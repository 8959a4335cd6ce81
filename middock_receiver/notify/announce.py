"""What the deploy worker and the cron runner call once their work has ended: build the event
from the finished records and hand it to a detached deliverer.

A notification never changes how a deploy or a run ended: whatever goes wrong here is one line
on stderr (the worker's `.err`, cron's mail), and the caller goes on. Config var values are
masked in what it sends (a commit subject, an error line), as in all output.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable

from ..edge.control import Edge
from ..errors import MiddockError
from ..jobs.runs import Run
from ..output import Output
from ..state import config, releases
from ..state.apps import App
from ..state.releases import FAILED, SUCCEEDED, Release
from . import delivery, events


def release_finished(app: App, number: int) -> None:
    """A deploy, rollback, restart or rescale ended: `deploy`, `rollback` or `failed`."""
    try:
        release = releases.load(app, number)
        if release is None or release.result not in (SUCCEEDED, FAILED):
            return  # its record could not be finished: the next deploy marks it interrupted
        hide = masker(app)
        release = dataclasses.replace(release, subject=hide(release.subject), message=hide(release.message))
        delivery.send_detached(app, events.release_event(app.name, release, live_url(app, release)))
    except (MiddockError, OSError, ValueError) as error:
        warn(app, error)


def job_failed(app: App, release: Release, run: Run, error: str | None = None) -> None:
    """A scheduled run failed or timed out: `cron-failed`."""
    try:
        hide = masker(app)
        release = dataclasses.replace(release, subject=hide(release.subject))
        delivery.send_detached(app, events.job_event(app.name, release, run, hide(error) if error else None))
    except (MiddockError, OSError, ValueError) as failure:
        warn(app, failure)


def live_url(app: App, release: Release) -> str | None:
    """Where the app is live when the release runs behind the edge (its first domain, else its port)."""
    if not release.slot or release.result != SUCCEEDED:
        return None
    try:
        urls = Edge(app.home).urls(app)
    except (MiddockError, OSError, ValueError):
        return None
    return urls[0] if urls else None


def masker(app: App) -> Callable[[str], str]:
    """Hides the app's config var values, as Output does."""
    masking = Output()
    masking.mask(list(config.read_vars(app).values()))
    return masking.masked


def warn(app: App, error: Exception) -> None:
    sys.stderr.write(f" !     the webhooks of {app.name} were not notified: {error}\n")
