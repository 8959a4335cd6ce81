"""Where a release's containers run beside another release: a Compose project on this server, or
a stack on the Swarm. Both have the same verbs, so the blue/green switch (switch.py) is one
piece of code for both, and an app moves between them (`apps:set APP target`) with the same
switch as any deploy.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading

import docker
import docker.errors

from .. import process
from ..edge import routes
from ..errors import MiddockError
from ..output import Output
from ..runtime import compose, overrides, registry, swarm
from ..runtime.plan import ComposeStack, without_git
from ..runtime.side_by_side import Web
from ..state import cluster, releases
from ..state.apps import App
from ..state.releases import Release
from . import health, stacks


class ComposePlace:
    """A release's own Compose project on this server (or the app's, for one run in place)."""

    def __init__(self, app: App, release: Release, client: docker.DockerClient, env: dict, out: Output) -> None:
        self.app, self.release = app, release
        self.client, self.env, self.out = client, env, out
        self.name = stacks.project(app, release)

    @functools.cached_property
    def stack(self) -> ComposeStack:
        return stacks.release_stack(self.app, compose.compose_program(), self.release)

    def compose(self, argv: list[str], what: str) -> None:
        compose.run(argv, self.env, self.stack.directory, self.out, what)

    def start(self, services: list[str]) -> None:
        self.compose(self.stack.up(services=services), "docker compose up")

    resume = start

    def problems(self, services: list[str], counts: dict[str, int], timeout: float) -> list[str]:
        return health.wait_healthy(self.client, self.name, services, timeout, self.out.detail, 0.0)

    def stop(self, services: list[str]) -> None:
        self.compose(self.stack.stop(services), "docker compose stop")

    def remove(self) -> None:
        with contextlib.suppress(MiddockError):
            self.compose(self.stack.down(), "docker compose down")
        stacks.remove_project(self.client, self.name)  # what down left: its networks (middock's own)

    def keep(self) -> None:
        """Stop every container, keep them: the release can come back by starting them."""
        self.compose(self.stack.stop([]), "docker compose stop")

    def endpoints(self, app: App, slot: str, web: Web) -> list[str]:
        """The slot's loopback ports, chosen when the release was pinned."""
        return routes.load(app).slots.get(slot, [])


class KeptPlace(ComposePlace):
    """The containers a switch replaced and kept stopped (releases.Kept): started again, not
    created, for an instant rollback."""

    def __init__(self, app: App, release: Release, client: docker.DockerClient, env: dict, out: Output) -> None:
        super().__init__(app, release, client, env, out)
        self.checks = health.QuickChecks()

    def start(self, services: list[str]) -> None:
        """All at once, each container's healthcheck run as soon as it started: starting a
        container is mostly Docker's own waiting (its network), and Docker would first run the
        check only after its `interval`."""
        wanted = set(services)
        refused: list[str] = []

        def start(container) -> None:  # noqa: ANN001
            try:
                container.start()
            except docker.errors.APIError as error:
                refused.append(f"{container.name}: {error.explanation or error}")
            else:
                self.checks.run([container])

        starting = [
            threading.Thread(target=start, args=(container,))
            for container in health.project_containers(self.client, self.name)
            if container.labels.get(compose.SERVICE_LABEL) in wanted
        ]
        for thread in starting:
            thread.start()
        for thread in starting:
            thread.join()
        if refused:
            raise MiddockError(f"Docker could not start {refused[0]}")

    resume = start

    def problems(self, services: list[str], counts: dict[str, int], timeout: float) -> list[str]:
        return health.wait_healthy(self.client, self.name, services, timeout, self.out.detail, checks=self.checks)


class SwarmPlace:
    """A release's own stack on the Swarm, deployed from its generated stack file."""

    def __init__(self, app: App, release: Release, client: docker.DockerClient, env: dict, out: Output) -> None:
        folder = releases.folder(app, release.number)
        self.name = stacks.project(app, release)
        self.stack = swarm.Stack(self.name, str(folder / stacks.SWARM))
        self.app, self.release, self.client, self.env, self.out, self.folder = app, release, client, env, out, folder

    def start(self, services: list[str]) -> None:
        """Deploy the stack; services left out (they stop first elsewhere) start with 0 tasks.
        With middock's own registry, the CLI hands the tasks its pull password."""
        env = {**without_git(os.environ), **self.env}
        record = cluster.require(self.app.home)
        if record.own_registry:
            env["DOCKER_CONFIG"] = str(registry.Files(cluster.folder(self.app.home) / "registry").docker_config)
        result = process.stream(self.stack.deploy(), self.out.detail, env=env, cwd=self.folder)
        if result.returncode != 0:
            raise MiddockError(f"docker stack deploy failed with exit code {result.returncode}")

    def resume(self, services: list[str]) -> None:
        pinned = stacks.pinned_config(self.app, self.release)
        swarm.scale(self.client, self.name, {s: overrides.replicas(pinned["services"][s]) for s in services})

    def problems(self, services: list[str], counts: dict[str, int], timeout: float) -> list[str]:
        wanted = {service: counts[service] for service in services}
        return swarm.wait_running(self.client, self.name, wanted, timeout, self.out.detail)

    def stop(self, services: list[str]) -> None:
        swarm.scale(self.client, self.name, dict.fromkeys(services, 0))

    def remove(self) -> None:
        swarm.remove(self.client, self.name)

    def endpoints(self, app: App, slot: str, web: Web) -> list[str]:
        return swarm.endpoints(self.client, self.name, web.service, web.port)


def place_of(app: App, release: Release, client: docker.DockerClient, env: dict, out: Output):  # noqa: ANN201
    kind = SwarmPlace if stacks.on_swarm(app, release) else ComposePlace
    return kind(app, release, client, env, out)
