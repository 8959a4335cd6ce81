"""The Docker Engine of this server, as the SDK reaches it: one clear line when it is not there."""

from __future__ import annotations

import docker
import docker.errors

from ..errors import MiddockError


def docker_client() -> docker.DockerClient:
    """A client for the local daemon; one clear error when it is not there."""
    try:
        client = docker.from_env(version="auto", timeout=120)
        client.ping()
        return client
    except docker.errors.DockerException as error:
        reason = str(error).split(": ", 1)[-1][:200]
        raise MiddockError(f"the Docker daemon is not reachable ({reason}); nothing was changed") from None
