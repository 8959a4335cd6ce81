"""The compose stage: find Compose v2, resolve the stack's configuration, pin its images to
the release, and bring the stack up or down; and the labels by which Compose finds what it made."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from functools import cache
from pathlib import Path

from .. import process
from ..errors import MiddockError
from ..output import Output
from .engine import docker
from .plan import ComposeStack, release_tag

# The labels Compose puts on what it creates: how a project's containers, networks and volumes
# are found (and how middock labels those it creates for Compose).
PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"
ONEOFF_LABEL = "com.docker.compose.oneoff"
NUMBER_LABEL = "com.docker.compose.container-number"
NETWORK_LABEL = "com.docker.compose.network"
VOLUME_LABEL = "com.docker.compose.volume"


def one_off(labels: dict[str, str]) -> bool:
    """Whether a container is a `docker compose run` one-off (a release command's), not a service's."""
    return labels.get(ONEOFF_LABEL) == "True"


@cache
def compose_program() -> tuple[str, ...]:
    """`docker compose` when it is v2, else a standalone `docker-compose` that reports v2."""
    found = []
    for program in (("docker", "compose"), ("docker-compose",)):
        try:
            result = process.capture([*program, "version", "--short"])
        except FileNotFoundError:
            continue
        version = result.stdout.strip().lstrip("v")
        if result.returncode == 0 and version.split(".")[0].isdigit():
            if int(version.split(".")[0]) >= 2:
                return program
            found.append(f"{' '.join(program)} {version}")
    detail = f"found {', '.join(found)}" if found else "found neither `docker compose` nor `docker-compose`"
    raise MiddockError(f"Docker Compose v2 is required ({detail})")


def compose_error(stderr: str) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip() and "level=warning" not in line]
    return lines[-1] if lines else "no message"


def resolve(stack: ComposeStack, env: Mapping[str, str]) -> dict:
    """The stack's configuration as Compose resolves it (variables interpolated, paths absolute)."""
    result = process.capture(stack.config(), env=env, cwd=stack.directory)
    if result.returncode != 0:
        raise MiddockError(f"invalid compose file: {compose_error(result.stderr)}")
    config = json.loads(result.stdout)
    if not config.get("services"):
        raise MiddockError("the compose file defines no services")
    return config


def pin_images(client: docker.DockerClient, config: dict, app: str, release: int) -> dict[str, str]:
    """Point every service at its image id, and tag that image for the release.

    Returns service -> image id. The pinned configuration is what runs now and what a
    rollback runs later, so neither depends on tags the build scripts may move; the release
    tag keeps the image from being deleted while the release is kept. A service whose image
    did not change keeps the same configuration, so Compose leaves its containers running.
    """
    found = {service: service_image(client, service, spec) for service, spec in config["services"].items()}
    for service, image in found.items():  # only once every image exists: no stray tags
        image.tag(*release_tag(app, release, service).rsplit(":", 1))
        config["services"][service]["image"] = image.id
        config["services"][service].pop("build", None)
    return {service: image.id for service, image in found.items()}


def service_image(client: docker.DockerClient, service: str, spec: dict) -> docker.models.images.Image:
    ref = spec.get("image")
    if not ref:
        raise MiddockError(f"service {service} has no image: name the image a build script makes")
    try:
        return client.images.get(ref)
    except docker.errors.ImageNotFound:
        raise MiddockError(f"service {service}: image {ref} does not exist; no build script built it") from None


def write_config(config: dict, path: Path) -> None:
    """A resolved configuration holds the config vars: 0600 from its creation on."""
    write_private(path, json.dumps(config, indent=2) + "\n")


def write_private(path: Path, text: str) -> None:
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def run(argv: list[str], env: Mapping[str, str], cwd: Path, out: Output, what: str) -> None:
    result = process.stream(argv, out.detail, env=env, cwd=cwd)
    if result.returncode != 0:
        raise MiddockError(f"{what} failed with exit code {result.returncode}")
