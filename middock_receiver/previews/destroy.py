"""Taking a preview away: its teardown command, then everything it had (containers, images,
volumes, releases, routes, certificates, crontab lines); and the previews past their
preview-ttl. The parent is never touched."""

from __future__ import annotations

import os
import time
from collections.abc import Collection

from ..edge import caddy, routes
from ..edge.control import Edge
from ..errors import MiddockError, os_error_line
from ..jobs import crontab
from ..output import Output
from ..pipeline import release_phase, removal, stacks
from ..runtime import compose
from ..runtime.engine import docker, docker_client
from ..runtime.plan import Target, deploy_env
from ..state import apps, config, previews, releases
from ..state.apps import App
from ..state.lock import DeployLock

DAY = 24 * 3600


def destroy(app: App, out: Output) -> None:
    """Destroy a preview, once any deploy of it in progress has ended."""
    if previews.load(app) is None:
        raise MiddockError(f"{app.name} is not a preview app")
    lock = DeployLock(app)
    if not lock.try_acquire():
        out.step(f"Waiting for the deploy of {app.name} in progress to finish")
        lock.acquire()
    try:
        out.step(f"Destroying preview {app.name}")
        teardown(app, out)
        crontab.apply(app, [])
        domains = routes.load(app).domains
        removal.remove_app(app, volumes=True)
        apps.destroy(app)
        edge = Edge(app.home)
        edge.apply()  # its domains leave the edge with its record
        for name in domains:
            caddy.forget_certificate(edge.paths, name)
    finally:
        lock.release()
    out.step(f"Destroyed preview {app.name}")


def teardown(app: App, out: Output) -> None:
    """MIDDOCK_PREVIEW_TEARDOWN in a one-off container of the live release (drop its database);
    a failure is reported, and the preview is destroyed all the same."""
    live = releases.live(app)
    if live is None:
        return
    try:
        folder = releases.folder(app, live.number)
        variables = config.read_file(folder / "env")
        target = Target(app.name, live.number, live.commit, live.ref)
        env = deploy_env(target, config.repo_defaults(folder / "checkout"), variables, os.environ)
        services = stacks.pinned_config(app, live)["services"]
        stack = stacks.release_stack(app, compose.compose_program(), live)
        release_phase.run_release_command(stack, services, env, out, docker_client(), release_phase.PREVIEW_TEARDOWN)
    except MiddockError as error:
        out.warn(f"{error}; destroying the preview all the same")
    except (OSError, docker.errors.DockerException) as error:
        problem = os_error_line(error) if isinstance(error, OSError) else str(error)
        out.warn(f"the preview teardown command could not run ({problem}); destroying the preview all the same")


def expired(parent: App, now: float | None = None, spare: Collection[str | None] = ()) -> list[App]:
    """The parent's previews that got no push for its preview-ttl days (but the branches `spare`)."""
    ttl = apps.read_settings(parent)["preview-ttl"]
    if not ttl:
        return []
    now = time.time() if now is None else now
    found = previews.of_parent(parent).items()
    return [app for app, preview in found if now - preview.pushed > ttl * DAY and preview.branch not in spare]


def expire(parent: App, out: Output, spare: Collection[str | None] = ()) -> int:
    """Destroy the previews past their preview-ttl; returns how many."""
    gone = expired(parent, spare=spare)
    for app in gone:
        out.step(f"{app.name} got no push for {apps.read_settings(parent)['preview-ttl']} days (preview-ttl)")
        destroy(app, out)
    return len(gone)
