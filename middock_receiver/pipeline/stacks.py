"""A release's stack on disk and in Docker: which Compose project and file run it, and the
app's projects that exist right now.

A release replaced in place runs under the app's own project, from its pinned `compose.json`.
A release behind the edge runs beside the live one under a project of its own (`APP_rN`), from
`stack.json`: the pinned configuration changed to run side by side (runtime/side_by_side.py).
"""

from __future__ import annotations

import re

from ..edge import routes
from ..errors import MiddockError
from ..runtime import swarm
from ..runtime.compose import PROJECT_LABEL, SERVICE_LABEL
from ..runtime.engine import docker
from ..runtime.plan import ComposeStack
from ..state import config, records, releases
from ..state.apps import App
from ..state.releases import Release
from . import kept_logs
from .health import project_containers

PINNED, BESIDE, SWARM = "compose.json", "stack.json", "swarm.json"


def on_swarm(app: App, release: Release) -> bool:
    """Whether the release runs as a stack on the Swarm (it has a stack file)."""
    return (releases.folder(app, release.number) / SWARM).exists()


def project(app: App, release: Release) -> str:
    return release.project or app.name


def release_stack(app: App, program: tuple[str, ...], release: Release) -> ComposeStack:
    """What acts on a release's containers: its project, its run file, its checkout."""
    folder = releases.folder(app, release.number)
    run_file = folder / BESIDE if (folder / BESIDE).exists() else folder / PINNED
    return ComposeStack(program, project(app, release), (str(run_file),), folder / "checkout")


def pinned_config(app: App, release: Release) -> dict:
    """The release's pinned configuration (its services, images, scale)."""
    path = releases.folder(app, release.number) / PINNED
    found = records.read_json(path)
    if found is None:
        raise MiddockError(f"release {release.number} of {app.name} has no pinned compose file; deploy again")
    if not (isinstance(found, dict) and isinstance(found.get("services"), dict)):
        raise records.invalid(path, "not a Compose configuration with services")
    return found


def release_env(app: App, release: Release) -> dict[str, str]:
    """The settings a release ran with: its repo's middock.env under its config vars."""
    folder = releases.folder(app, release.number)
    values = config.repo_defaults(folder / "checkout")
    values.update(config.read_file(folder / "env"))
    return values


def check_service(app: App, release: Release, service: str) -> None:
    services = list(pinned_config(app, release)["services"])
    if service not in services:
        raise MiddockError(
            f"{app.name} has no service {service!r} in release {release.number} (services: {', '.join(services)})"
        )


def app_projects(client: docker.DockerClient, app: App) -> set[str]:
    """The app's Compose projects that have containers (in place, and its releases beside) and
    its stacks on the Swarm."""
    own = re.compile(rf"{re.escape(app.name)}(_r[0-9]+)?\Z")
    # sparse: the listing's own labels, no inspection of each container (one of another app
    # removed meanwhile by its deploy would fail it)
    containers = client.containers.list(all=True, filters={"label": PROJECT_LABEL}, sparse=True)
    projects = {(c.attrs.get("Labels") or {}).get(PROJECT_LABEL, "") for c in containers}
    found = {project for project in projects if own.match(project)}
    return found | {name for name in swarm_stacks(client) if own.match(name)}


def swarm_stacks(client: docker.DockerClient) -> set[str]:
    try:
        return swarm.stacks(client)
    except docker.errors.APIError:
        return set()  # not a Swarm manager


def remove_project(client: docker.DockerClient, name: str, keep_networks: bool = False) -> None:
    """Remove a project's (or a stack's) containers and networks at once, without its file (a
    crashed deploy's, or one whose release was pruned). Volumes stay: they are the app's data;
    `keep_networks` keeps the networks too (middock made them, and the project comes right back)."""
    if name in swarm_stacks(client):
        swarm.remove(client, name)
    for container in project_containers(client, name):
        try:
            container.remove(force=True)
        except docker.errors.NotFound:
            pass  # gone already: a killed `docker compose up` had asked the daemon to remove it
        except docker.errors.APIError as error:
            if error.status_code != 409:  # 409: its removal is already under way
                raise
    if keep_networks:
        return
    for network in client.networks.list(filters={"label": f"{PROJECT_LABEL}={name}"}):
        try:
            network.remove()
        except docker.errors.APIError:
            pass  # still in use by a container of another project; it goes with that one


def discard_kept(client: docker.DockerClient, app: App, warn: kept_logs.Warn) -> None:
    """Remove the containers the last switch kept stopped (the app's next deploy does), keeping
    their last lines: never the live release's."""
    kept = releases.kept(app)
    if kept is None:
        return
    live = releases.live(app)
    if live is None or project(app, live) != kept.project:
        kept_logs.keep(client, app, kept.release, kept.project, warn)
        remove_project(client, kept.project)
    releases.set_kept(app, None)


def revivable(
    client: docker.DockerClient, app: App, number: int, counts: dict[str, int]
) -> tuple[releases.Kept, list] | None:
    """The kept containers of release `number` (their record, and them as listed), if a rollback
    can start them again as they are: all there and stopped, as many per service as `counts`
    (the app's scale now), and their loopback ports free."""
    kept = releases.kept(app)
    if kept is None or kept.release != number or not (releases.folder(app, number) / BESIDE).exists():
        return None
    containers = project_containers(client, kept.project)
    per_service: dict[str, int] = {}
    for container in containers:
        if container.status == "running":
            return None
        service = container.labels.get(SERVICE_LABEL, "?")
        per_service[service] = per_service.get(service, 0) + 1
    wanted = {service: count for service, count in counts.items() if count}
    if not containers or per_service != wanted:
        return None
    ports = [
        int(binding["HostPort"])
        for container in containers
        for bindings in (container.attrs.get("HostConfig", {}).get("PortBindings") or {}).values()
        for binding in bindings or []
        if binding.get("HostPort", "").isdigit()
    ]
    return (kept, containers) if all(routes.bindable(port, "127.0.0.1") for port in ports) else None
