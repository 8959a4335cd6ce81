"""The build stage's second half: Compose's own `build:`.

A service with `build:` whose image no build script made in this deploy is built by `docker
compose build`, with the environment the build scripts get (IMAGE_TAG, the config vars: Compose
passes them as build args where the file asks for them). The build scripts run first and win.
Services with the same build (context, Dockerfile, args, target) are built once and tagged for
each other. Docker's layer cache is kept between releases, and what is older than a week pruned.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Set
from pathlib import Path

from .. import process
from ..errors import MiddockError, quoted
from ..output import Output
from ..runtime import compose
from ..runtime.engine import docker
from ..runtime.plan import ComposeStack

CACHE_KEPT = "168h"  # build cache unused for longer is pruned after a build


def default_image(project: str, service: str) -> str:
    """The name Compose gives the image of a service with `build:` and no `image:`."""
    return f"{project}-{service}"


def name_images(resolved: dict, project: str) -> None:
    """Give every `build:` service without `image:` the name Compose builds it under, so that the
    release pins it like any other image."""
    for service, spec in resolved["services"].items():
        if "build" in spec and not spec.get("image"):
            spec["image"] = default_image(project, service)


def check_contexts(resolved: dict, checkout: Path) -> None:
    """Every build context is a folder of the repository (never the server's other files, nor a URL)."""
    root = str(checkout.resolve())
    for service, spec in resolved["services"].items():
        build = spec.get("build")
        if build is None:
            continue
        context = str(build.get("context", ".")) if isinstance(build, dict) else str(build)
        path = Path(context) if os.path.isabs(context) else checkout / context
        if "://" in context:
            raise MiddockError(f"service {service}: build context {quoted(context)} is outside the repository")
        if os.path.commonpath([str(path.resolve()), root]) != root:
            shown = os.path.relpath(path.resolve(), root)  # as the compose file says it, not the server's path
            raise MiddockError(f"service {service}: build context {quoted(shown)} is outside the repository")


def planned(resolved: dict, made_by_scripts: Set[str]) -> dict[str, list[str]]:
    """The services Compose builds, each with the services that share its build (they get its
    image): every `build:` service whose image the build scripts did not make."""
    groups: dict[str, list[str]] = {}
    for service, spec in resolved["services"].items():
        if "build" in spec and spec["image"] not in made_by_scripts:
            groups.setdefault(json.dumps(spec["build"], sort_keys=True), []).append(service)
    return {members[0]: members[1:] for members in groups.values()}


def build(
    stack: ComposeStack,
    resolved: dict,
    made_by_scripts: Set[str],
    env: Mapping[str, str],
    client: docker.DockerClient,
    out: Output,
) -> list[str]:
    """Build what `planned` says, streaming Compose's output; returns the services built."""
    plan = planned(resolved, made_by_scripts)
    if not plan:
        return []
    services = list(plan)
    out.step(f"Building {', '.join(services)} with Compose (build:)")
    compose.run(stack.command("--progress", "plain", "build", *services), env, stack.directory, out, "compose build")
    for leader, members in plan.items():
        image = client.images.get(resolved["services"][leader]["image"])
        for member in members:
            image.tag(*tag_parts(resolved["services"][member]["image"]))
    return services


def tag_parts(ref: str) -> tuple[str, str]:
    """`repo:tag` as (repo, tag); a ref without a tag is `latest` (a registry's port is no tag)."""
    repo, sep, tag = ref.rpartition(":")
    return (repo, tag) if sep and "/" not in tag else (ref, "latest")


def prune_cache(env: Mapping[str, str], out: Output) -> None:
    """Drop build cache unused for a week, so builds never fill the disk (a warning if Docker refuses)."""
    argv = ["docker", "builder", "prune", "--force", "--filter", f"until={CACHE_KEPT}"]
    result = process.capture(argv, env=env)
    if result.returncode != 0:
        out.warn(f"the build cache was not pruned: {compose.compose_error(result.stderr)}")
