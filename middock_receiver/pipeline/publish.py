"""A release for the Swarm: its images in the registry every node pulls from, pinned by digest,
and its stack file; and, when it is pruned, its images deleted from the registry again.

A rollback or restart pushes nothing: the release it runs again already has its images in the
registry, and its stack file is written from the same references.
"""

from __future__ import annotations

from ..errors import MiddockError
from ..output import Output
from ..runtime import compose, registry, side_by_side, stack_file
from ..runtime.engine import docker
from ..runtime.side_by_side import Web
from ..state import cluster, releases
from ..state.apps import App
from ..state.releases import Release
from . import stacks


def registry_files(app: App, own: bool) -> registry.Files | None:
    return registry.Files(cluster.folder(app.home) / "registry") if own else None


def with_pull_password(client: docker.DockerClient, app: App) -> docker.DockerClient:
    """The client, holding the nodes' password of middock's own registry, so a service it
    creates (a one-off task) hands it to the node that pulls the image."""
    swarm = cluster.load(app.home)
    files = registry_files(app, bool(swarm and swarm.own_registry))
    if files:
        client.api.reload_config(str(files.docker_config / "config.json"))
    return client


def publish(
    client: docker.DockerClient,
    app: App,
    release: Release,
    previous: Release | None,
    source: Release | None,
    resolved: dict,
    web: Web | None,
    env: dict,
    out: Output,
) -> None:
    """Push what the registry lacks, write the stack file (`swarm.json`). The images a release
    pushed before are reused where a service runs the same one: `source`'s (the release a
    rollback or restart runs again), else the live release's (a deploy that left them as they were)."""
    swarm = cluster.require(app.home)
    release.slot = side_by_side.other_slot(previous.slot if previous else None)
    release.project = side_by_side.project_name(app.name, release.number)
    wanted = {name: spec["image"] for name, spec in resolved["services"].items()}
    reused = already_pushed(source or previous, wanted, swarm.registry)
    to_push = {name: image for name, image in wanted.items() if name not in reused}
    if to_push:
        out.step(f"Pushing {len(to_push)} image{'s' * (len(to_push) > 1)} to the registry {swarm.registry}")
    elif not source:
        out.step(f"No image to push to the registry {swarm.registry}")
    if reused and previous and not source:
        out.detail(f"{', '.join(sorted(reused))}: unchanged since release {previous.number}, pushed then")
    files = registry_files(app, swarm.own_registry)
    password = registry.read_password(files, registry.PUSH_USER) if files else ""
    with registry.locked(files):
        for name, image in to_push.items():
            repo, tag = f"{app.name}/{name}", f"r{release.number}"
            reused[name] = registry.push(client, image, swarm.push_registry, swarm.registry, repo, tag, password)
            out.detail(f"{name}: {reused[name]}")
    release.pushed = {name: reused[name] for name in wanted}
    first = side_by_side.stop_first(env)
    stack = stack_file.stack_file(resolved, app.name, release.pushed, web)
    for name in first:  # they start once the old release's stopped (switch.py)
        if name in stack["services"]:
            stack["services"][name]["deploy"]["replicas"] = 0
    compose.write_config(stack, releases.folder(app, release.number) / stacks.SWARM)  # it holds the config vars


def already_pushed(earlier: Release | None, wanted: dict[str, str], pull_address: str) -> dict[str, str]:
    """The references `earlier` pushed for services whose image it ran is the one wanted now,
    in the registry the nodes pull from today (it holds them while a kept release uses them)."""
    if earlier is None:
        return {}
    return {
        name: ref
        for name, ref in earlier.pushed.items()
        if name in wanted and earlier.images.get(name) == wanted[name] and ref.startswith(f"{pull_address}/")
    }


def unpublish(app: App, dropped: list[Release], kept: list[Release]) -> list[str]:
    """Delete from the registry the images of pruned releases that no kept one uses; returns them."""
    swarm = cluster.load(app.home)
    still_used = {ref for release in kept for ref in release.pushed.values()}
    refs = sorted({ref for release in dropped for ref in release.pushed.values()} - still_used)
    if swarm is None or not refs:
        return []
    files = registry_files(app, swarm.own_registry)
    api = registry.Registry.own(files) if files else registry.Registry(swarm.registry, swarm.registry_ca)
    deleted = []
    for ref in refs:
        try:
            api.delete(ref)
            deleted.append(ref)
        except MiddockError:
            continue  # a registry away now: the images stay, the release is pruned all the same
    if files and deleted:
        with registry.locked(files, exclusive=True):
            registry.garbage_collect(files)
    return deleted
