"""What the preview tests read: a push's last step, an app's containers."""

from __future__ import annotations

import docker


def last_step(output: str) -> str:
    return [line for line in output.splitlines() if "----->" in line][-1]


def containers_of(client: docker.DockerClient, name: str) -> list[str]:
    """Containers of an app's projects (NAME, NAME_rN) and its one-offs."""
    found = client.containers.list(all=True, ignore_removed=True)
    return [
        c.name
        for c in found
        if c.labels.get("com.docker.compose.project", "").split("_r")[0] == name or c.name.startswith(f"{name}-")
    ]
