"""Moving a deploy user's apps from the root Docker daemon to its own rootless one.

An install from before rootless mode keeps a user whose apps run on the root daemon there (its
keys stay root-equivalent) until root runs `middock refresh --rootless`, which starts the user's
own daemon and calls `move_all` as the user (still in the `docker` group, so it reaches both).

Each app's deploy lock is held throughout, so no push or rollback runs meanwhile; they wait. Per
app: the images of its kept releases are copied (save from one daemon, load into the other); its
live release then starts on the own daemon as a release of its own ("rootless move of release N",
no build), gated and switched to as any release. A stateless app behind the edge runs beside the
old containers, so it drops no request. One with named volumes, or one that runs in place, is
stopped first: its volumes are copied while nothing writes them, and the own daemon, writing the
copy, maps their owners into the user's subordinate ids. The old containers are then removed; the
root daemon keeps the volumes and images, a copy to fall back on.

A failure leaves the app on the root daemon, serving: the old containers started again, the new
ones and the copied volumes removed. It is held (`lock`), since its next push would run on the own
daemon without its data, until `refresh --rootless` runs again and moves it.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..errors import MiddockError
from ..output import Output
from ..pipeline import stacks
from ..pipeline.deploy import Deploy
from ..pipeline.health import project_containers
from ..runtime.engine import docker, docker_client
from ..runtime.plan import RELEASE_REPOSITORY, release_tags_prefix
from ..server import rootless
from ..state import lock, records, releases
from ..state.apps import App, all_apps
from ..state.lock import DeployLock, Request
from ..state.releases import Release

ROOT_DAEMON = "unix:///var/run/docker.sock"
REASON = "rootless move"  # a moved app's release reads "rootless move of release N"
HELD = "its move to the own rootless Docker daemon failed: root runs `middock refresh --rootless` again"
MOUNT = "/middock-volume"  # where the copying containers (created, never started) mount a volume


@dataclass
class Daemons:
    root: docker.DockerClient
    own: docker.DockerClient


def move_all(home: str) -> list[str]:
    """As the user, its own daemon running: move every app of `home` that runs on the root daemon;
    returns the names of those that stay there (their failure said on stdout)."""
    rootless.use_own_daemon()
    if not rootless.in_use():
        raise MiddockError("the user's own Docker daemon is not running: nothing was moved")
    daemons = Daemons(docker.DockerClient(base_url=ROOT_DAEMON, version="auto", timeout=300), docker_client())
    out = Output(sys.stdout.buffer)
    apps = all_apps(Path(home))
    with locked(apps, out):
        return [app.name for app in apps if not move(app, daemons, out)]


@contextlib.contextmanager
def locked(apps: list[App], out: Output) -> Iterator[None]:
    """Every app's deploy lock, taken once its deploy in progress has ended."""
    held: list[DeployLock] = []
    try:
        for app in apps:
            deploy_lock = DeployLock(app)
            if not deploy_lock.try_acquire():
                out.step(f"Waiting for the deploy of {app.name} in progress to finish")
                deploy_lock.acquire()
            held.append(deploy_lock)
        yield
    finally:
        for deploy_lock in held:
            deploy_lock.release()


def move(app: App, daemons: Daemons, out: Output) -> bool:
    """Move one app (see the module's docstring); True once it runs on the own daemon."""
    live = releases.live(app)
    if live is None or runs_on(daemons.own, stacks.project(app, live)):
        return settled(app, daemons, out)  # nothing to run, or moved already (an earlier move, or a push since)
    if stacks.on_swarm(app, live):
        out.error(f"{app.name} runs on the Swarm, which needs the root daemon: not moved")
        return False
    out.step(f"Moving {app.name} (release {live.number}) to the own rootless Docker daemon")
    project, image = stacks.project(app, live), next(iter(live.images.values()), "")  # the copying containers
    try:
        volumes = volume_names(app, live)
        for name in volumes:
            check_copyable(daemons.root, name)
        copy_images(daemons, app, out)
        if not runs_on(daemons.root, project):  # stopped (`stop`): its data moves, `start` starts it there
            copy_volumes(daemons, volumes, image, out)
            return settled(app, daemons, out)
    except (MiddockError, docker.errors.DockerException) as error:
        out.error(f"{app.name} was not moved, and serves as before: {str(error) or type(error).__name__}")
        lock.hold(app, HELD)
        return False
    stopped = stop_first(daemons.root, project, live.number, out) if volumes or not live.slot else []
    try:
        copy_volumes(daemons, volumes, image, out)
        moved = Deploy(app, Request(live.commit, live.ref, "root", restore=live.number, reason=REASON), out).run()
    except (MiddockError, docker.errors.DockerException) as error:
        out.error(f"{app.name}: {str(error) or type(error).__name__}")
        moved = False
    if not moved:
        put_back(app, daemons, volumes, stopped, out)
        return False
    return settled(app, daemons, out)


def settled(app: App, daemons: Daemons, out: Output) -> bool:
    """The app runs on the own daemon (or nothing of it runs): what the root daemon still has of
    it removed, the record of containers kept there forgotten, a failed move's hold lifted."""
    remove_leftovers(daemons.root, app, out)
    kept = releases.kept(app)
    if kept is not None and kept.project not in stacks.app_projects(daemons.own, app):
        releases.set_kept(app, None)  # its containers were the root daemon's
    release_hold(app)
    return True


def runs_on(client: docker.DockerClient, project: str) -> bool:
    return any(c.status == "running" for c in project_containers(client, project))


def volume_names(app: App, live: Release) -> list[str]:
    """The named volumes the live release mounts (Compose's names for them)."""
    found = []
    for key, spec in (stacks.pinned_config(app, live).get("volumes") or {}).items():
        spec = spec or {}
        found.append(spec.get("name") or (key if spec.get("external") else f"{app.name}_{key}"))
    return found


def check_copyable(client: docker.DockerClient, name: str) -> None:
    """A plain local volume only: one of another driver, or backed by a host folder or a network
    share (driver options), holds its data elsewhere, which copying would not move."""
    try:
        volume = client.volumes.get(name)
    except docker.errors.NotFound:
        return  # made on the own daemon by the release, as on a first deploy
    driver, options = volume.attrs.get("Driver"), volume.attrs.get("Options")
    if driver != "local" or options:
        raise MiddockError(
            f"volume {name} ({driver} driver, options {options or {}}) keeps its data outside Docker, "
            "which middock does not move: move that app by hand"
        )


def copy_images(daemons: Daemons, app: App, out: Output) -> None:
    """The images of the app's kept releases (their release tags), each loaded once into the own
    daemon and tagged as on the root daemon: a rollback there needs no build."""
    prefix = release_tags_prefix(app.name)
    images = daemons.root.images.list(name=RELEASE_REPOSITORY)
    copied = 0
    for image in images:
        tags = [tag for tag in image.tags if tag.startswith(prefix)]
        if not tags:
            continue
        try:
            daemons.own.images.get(image.id)
        except docker.errors.ImageNotFound:
            daemons.own.images.load(image.save(named=tags[0]))
            copied += 1
        own = daemons.own.images.get(image.id)
        for tag in tags:
            own.tag(*tag.rsplit(":", 1))
    out.detail(f"{copied} image{'s' * (copied != 1)} of its releases copied")


def stop_first(client: docker.DockerClient, project: str, number: int, out: Output) -> list:
    """Stop the live release's running containers, so that nothing writes its volumes or holds
    its ports while it moves; returns them, to start again should the move fail."""
    running = [c for c in project_containers(client, project) if c.status == "running"]
    out.step(f"Stopping release {number} on the root daemon (its volumes are copied, or it runs in place)")
    for container in running:
        container.stop(timeout=10)
    return running


def copy_volumes(daemons: Daemons, names: list[str], image: str, out: Output) -> None:
    for name in names:
        copy_volume(daemons, name, image, out)


def copy_volume(daemons: Daemons, name: str, image: str, out: Output) -> None:
    """The volume's files, owners and modes copied from the root daemon into a volume of the same
    name on the own daemon (one left by an earlier attempt is replaced: the root daemon's is the
    data), through containers created, never started, that mount it."""
    source = daemons.root.volumes.get(name)
    with contextlib.suppress(docker.errors.NotFound):
        daemons.own.volumes.get(name).remove()
    daemons.own.volumes.create(name, driver="local", labels=source.attrs.get("Labels") or {})
    reader = daemons.root.containers.create(image, ["middock-copy"], volumes={name: {"bind": MOUNT, "mode": "ro"}})
    try:
        writer = daemons.own.containers.create(image, ["middock-copy"], volumes={name: {"bind": MOUNT, "mode": "rw"}})
        try:
            archive, _ = reader.get_archive(MOUNT)
            writer.put_archive("/", archive)
        finally:
            writer.remove()
    finally:
        reader.remove()
    out.detail(f"volume {name} copied")


def put_back(app: App, daemons: Daemons, volumes: list[str], stopped: list, out: Output) -> None:
    """After a failed move: the app's containers on the own daemon and the copied volumes removed,
    the old containers started again, the app held."""
    remove_projects(daemons.own, app)
    for name in volumes:
        with contextlib.suppress(docker.errors.DockerException):
            daemons.own.volumes.get(name).remove()
    for container in stopped:
        container.start()
    lock.hold(app, HELD)
    out.error(f"{app.name} stays on the root daemon, serving release {releases.live_number(app)}; it is held")


def remove_projects(client: docker.DockerClient, app: App) -> set[str]:
    """The app's containers and networks on one daemon removed (volumes stay); returns its projects."""
    projects = stacks.app_projects(client, app)
    for project in projects:
        stacks.remove_project(client, project)
    return projects


def remove_leftovers(client: docker.DockerClient, app: App, out: Output) -> None:
    """The app's containers and networks on the root daemon (its volumes and images stay there)."""
    if remove_projects(client, app):
        out.step(f"{app.name} runs on the own daemon; its containers on the root daemon are removed")


def release_hold(app: App) -> None:
    """The hold of a failed move, lifted (a hold of the user's own stays)."""
    if records.read_line(lock.hold_path(app)) == HELD:
        lock.unhold(app)
