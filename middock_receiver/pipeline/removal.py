"""What an app's end, or a release's pruning, takes away: its containers, its images, its
routes, its running jobs and, for a preview, its volumes.

Only what is the app's own goes: images are untagged (Docker deletes one with its last tag,
never one another app still names), and an app's volumes stay unless asked (they are its data).
"""

from __future__ import annotations

from collections.abc import Set as AbstractSet

from ..edge import routes
from ..edge.control import Edge
from ..jobs.runs import JOB_LABEL
from ..runtime.engine import docker, docker_client
from ..runtime.plan import release_tag
from ..state import releases
from ..state.apps import App
from ..state.releases import Release
from . import publish, stacks


def image_ids(client: docker.DockerClient, refs: list[str]) -> dict[str, str]:
    """The image id each of `refs` names now (refs naming nothing are left out)."""
    ids = {}
    for ref in refs:
        try:
            ids[ref] = client.images.get(ref).id
        except docker.errors.ImageNotFound:
            pass
    return ids


def remove_images(
    client: docker.DockerClient, app: App, release: Release, still_used: AbstractSet[tuple[str, str]] = frozenset()
) -> None:
    """Untag a release's images: its release tags, and the refs its build scripts made that
    still name what they built and no kept release uses. Docker deletes an image with its
    last tag, so images of other apps, or not built by this app, are never touched."""
    refs = [release_tag(app.name, release.number, service) for service in release.images]
    refs += [
        ref
        for ref, id_ in release.built.items()
        if (ref, id_) not in still_used and image_ids(client, [ref]).get(ref) == id_
    ]
    for ref in refs:
        try:
            client.images.remove(ref)
        except docker.errors.APIError:
            pass  # still used by a container, or already gone: nothing of ours to force


def remove_app(app: App, volumes: bool = False) -> None:
    """Stop the app's containers and running jobs, take it off the edge and remove every image
    its releases pinned or built; with `volumes`, its named volumes too."""
    client = docker_client()
    for container in client.containers.list(
        all=True, filters={"label": f"{JOB_LABEL}={app.name}"}, ignore_removed=True
    ):
        container.remove(force=True)
    for name in stacks.app_projects(client, app) | {app.name}:
        stacks.remove_project(client, name)
    if routes.load(app).slots:
        Edge(app.home).forget(app)
    history = releases.history(app)
    for release in history:
        remove_images(client, app, release)
    publish.unpublish(app, history, [])
    if volumes:
        remove_volumes(client, app)


def remove_volumes(client: docker.DockerClient, app: App) -> None:
    """The app's named volumes: `APP_KEY` (behind the edge) and its projects' (`APP_…`). An
    app's name is letters, digits and '-', so no other app's volume starts with `APP_`."""
    for volume in client.volumes.list():
        if volume.name.startswith(f"{app.name}_"):
            try:
                volume.remove(force=True)
            except docker.errors.APIError:
                pass  # still mounted by a container that is going: nothing to force
