"""Where a release's containers run, its place: a Compose project of its own beside the live
release on this server (or the containers the last switch kept, started again), a stack of its
own on the Swarm, or the app's own project replaced in place (in_place.py).

Each place prepares itself before the release command runs, starts, gates on health and plays
its part of the switch. The places beside another share their verbs, so the blue/green switch
(switch.py) is one piece of code for all, and an app moves between them (`apps:set APP target`)
with the same switch as any deploy.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

from .. import process
from ..edge import routes
from ..edge.control import Edge
from ..errors import MiddockError
from ..output import Output
from ..runtime import compose, networks, overrides, registry, side_by_side, swarm
from ..runtime.compose import NETWORK_LABEL, PROJECT_LABEL, SERVICE_LABEL, VOLUME_LABEL
from ..runtime.engine import docker
from ..runtime.plan import ComposeStack, without_git
from ..runtime.side_by_side import Web
from ..state import cluster, releases
from ..state.apps import App
from ..state.releases import Release
from . import health, kept_logs, publish, stacks


@dataclass(eq=False)
class Place:
    """What every place works with: the app and its release, Docker, the deploy's environment
    and output."""

    app: App
    release: Release
    client: docker.DockerClient
    env: dict
    out: Output

    @property
    def name(self) -> str:
        """The release's Compose project or Swarm stack (chosen when it is prepared)."""
        return stacks.project(self.app, self.release)


class ComposePlace(Place):
    """A release's own Compose project on this server (or the app's, for one run in place)."""

    started_by = "docker compose up"
    keeps_when_retired = True  # stopped, not removed: a rollback to it only starts them again

    @functools.cached_property
    def stack(self) -> ComposeStack:
        return stacks.release_stack(self.app, compose.compose_program(), self.release)

    def compose(self, argv: list[str], what: str) -> None:
        compose.run(argv, self.env, self.stack.directory, self.out, what)

    def prepare(self, resolved: dict, previous: Release | None, web: Web | None) -> None:
        """Give the release its project, its slot (the one not serving) and that slot's loopback
        ports, create its networks and the app-wide volumes (its release command may mount them),
        and write the configuration it runs beside the live one (`stack.json`)."""
        assert web is not None  # on this server, only a release behind the edge runs beside another
        app, release = self.app, self.release
        side_by_side.check(resolved, web, side_by_side.stop_first(self.env))
        release.slot = side_by_side.other_slot(previous.slot if previous else None)
        release.project = side_by_side.project_name(app.name, release.number)
        with Edge(app.home).paths.locked():  # two apps' deploys at once never take the same ports
            record = routes.load(app)
            ports = routes.choose_slot_ports(app, record, release.slot, side_by_side.web_replicas(resolved, web))
        config = side_by_side.beside(resolved, app.name, release.project, web, ports)
        config = networks.prepared(self.client, config, release.project)
        ensure_shared(self.client, app, resolved)
        compose.write_config(config, releases.folder(app, release.number) / stacks.BESIDE)

    def open_slot(self, edge: Edge, previous: Release | None) -> None:
        """Before the release starts: an edge that serves the app already learns the slot's ports
        (chosen when it was prepared), so the switch is one flip."""
        if previous and previous.slot:
            edge.apply(self.app)

    def start(self, services: list[str]) -> None:
        self.compose(self.stack.up(services=services), "docker compose up")

    resume = start

    def gate(self, services: list[str], counts: dict[str, int], timeout: float) -> list[str]:
        """Wait for the services to be healthy; returns what keeps them from it (empty: passed)."""
        return health.wait_healthy(self.client, self.name, services, timeout, self.out.detail, 0.0)

    def endpoints(self, web: Web) -> list[str]:
        """The slot's loopback ports, chosen when the release was prepared."""
        return routes.load(self.app).slots.get(self.release.slot, [])

    def route(self, endpoints: list[str]) -> None:
        """After the gate: nothing to tell the edge, which has the slot's ports already."""

    def stop(self, services: list[str]) -> None:
        self.compose(self.stack.stop(services), "docker compose stop")

    def keep(self) -> None:
        """Stop every container, keep them: the release can come back by starting them."""
        self.compose(self.stack.stop([]), "docker compose stop")

    def remove(self) -> None:
        """Remove the release's containers, keeping their last lines."""
        kept_logs.keep(self.client, self.app, self.release.number, self.name, self.out.warn)
        with contextlib.suppress(MiddockError):
            self.compose(self.stack.down(), "docker compose down")
        stacks.remove_project(self.client, self.name)  # what down left: its networks (middock's own)


def ensure_shared(client: docker.DockerClient, app: App, resolved: dict) -> None:
    """Create the app-wide volumes and user-named networks the release shares with others."""
    labels = {PROJECT_LABEL: app.name}
    for name, spec in side_by_side.shared_volumes(resolved, app.name).items():
        try:
            client.volumes.get(name)
        except docker.errors.NotFound:
            client.volumes.create(
                name,
                driver=spec.get("driver") or "local",
                driver_opts=spec.get("driver_opts") or {},
                labels={**labels, VOLUME_LABEL: spec["key"], **(spec.get("labels") or {})},
            )
    for name, spec in side_by_side.shared_networks(resolved, app.name).items():
        networks.create(client, name, spec, {**labels, NETWORK_LABEL: spec["key"]})


@dataclass(eq=False)
class KeptPlace(ComposePlace):
    """The containers a switch replaced and kept stopped (`kept`; `containers`, as a rollback
    found them), started again, not created, for an instant rollback."""

    kept: releases.Kept
    containers: list
    probes: health.Probes = field(default_factory=health.Probes, init=False)

    @property
    def started_by(self) -> str:
        return f"its kept containers, started again, no compose up ({self.name})"

    def prepare(self, resolved: dict, previous: Release | None, web: Web | None) -> None:
        """The new release runs as the kept containers of a replaced one: their project, their
        slot, the very configuration they were created from (so Compose sees nothing to recreate).
        The edge's GET proves the web service answers, in place of its own healthcheck."""
        assert web is not None
        self.probes = health.Probes(health.proven_by_edge(resolved, web.service))
        old = releases.load(self.app, self.kept.release)
        assert old is not None
        self.release.slot, self.release.project = old.slot, self.kept.project
        source = releases.folder(self.app, self.kept.release) / stacks.BESIDE
        compose.write_private(releases.folder(self.app, self.release.number) / stacks.BESIDE, source.read_text())

    def start(self, services: list[str]) -> None:
        """All at once, each container's healthcheck probed as soon as it started: starting a
        container is mostly Docker's own waiting (its network)."""
        wanted = set(services)
        refused: list[str] = []

        def start(container) -> None:  # noqa: ANN001
            try:
                container.start()
            except docker.errors.APIError as error:
                refused.append(f"{container.name}: {error.explanation or error}")
            else:
                self.probes.watch([container])

        starting = [
            threading.Thread(target=start, args=(container,))
            for container in self.containers
            if container.labels.get(SERVICE_LABEL) in wanted
        ]
        for thread in starting:
            thread.start()
        for thread in starting:
            thread.join()
        if refused:
            self.probes.stop()
            raise MiddockError(f"Docker could not start {refused[0]}")

    resume = start

    def gate(self, services: list[str], counts: dict[str, int], timeout: float) -> list[str]:
        return health.wait_healthy(self.client, self.name, services, timeout, self.out.detail, probes=self.probes)


@dataclass(eq=False)
class SwarmPlace(Place):
    """A release's own stack on the Swarm, deployed from its generated stack file. `source`: the
    release a rollback or restart runs again (its images are in the registry already)."""

    started_by = "docker stack deploy"
    keeps_when_retired = False

    source: Release | None = None

    @property
    def folder(self) -> Path:
        return releases.folder(self.app, self.release.number)

    @property
    def stack(self) -> swarm.Stack:
        return swarm.Stack(self.name, str(self.folder / stacks.SWARM))

    def prepare(self, resolved: dict, previous: Release | None, web: Web | None) -> None:
        """Push the images to the registry every node pulls from, write the stack file."""
        publish.publish(self.client, self.app, self.release, previous, self.source, resolved, web, self.env, self.out)

    def open_slot(self, edge: Edge, previous: Release | None) -> None:
        """Before the release starts: nothing; where its tasks answer is known once they run (`route`)."""

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

    def gate(self, services: list[str], counts: dict[str, int], timeout: float) -> list[str]:
        """Wait for every service's tasks to run; returns what keeps them from it (empty: passed)."""
        wanted = {service: counts[service] for service in services}
        return swarm.wait_running(self.client, self.name, wanted, timeout, self.out.detail)

    def endpoints(self, web: Web) -> list[str]:
        return swarm.endpoints(self.client, self.name, web.service, web.port)

    def route(self, endpoints: list[str]) -> None:
        """After the gate: the slot is where the web tasks that passed it answer."""
        routes.set_endpoints(self.app, self.release.slot, endpoints)

    def stop(self, services: list[str]) -> None:
        swarm.scale(self.client, self.name, dict.fromkeys(services, 0))

    def remove(self) -> None:
        """Remove the release's tasks, keeping their last lines."""
        kept_logs.keep(self.client, self.app, self.release.number, self.name, self.out.warn, on_swarm=True)
        swarm.remove(self.client, self.name)


def place_of(
    app: App, release: Release, client: docker.DockerClient, env: dict, out: Output
) -> ComposePlace | SwarmPlace:
    """Where a release that was prepared before runs."""
    kind = SwarmPlace if stacks.on_swarm(app, release) else ComposePlace
    return kind(app, release, client, env, out)
