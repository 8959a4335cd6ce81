"""A release that replaces the app's stack in place: the app's own Compose project, brought to
the new configuration by `docker compose up` over the running stack, then gated on health.

Without a web service behind the edge there is no second stack to start beside the live one, so
a failed start or gate brings the previous release back (or stops the stack of a first deploy);
a release that ran behind the edge before is retired, with its routes, once the new one passed.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .. import settings
from ..edge.control import Edge
from ..errors import MiddockError
from ..runtime import compose, networks
from ..runtime.plan import ComposeStack
from ..runtime.side_by_side import Web
from ..state import releases
from ..state.releases import Release
from . import health, kept_logs, stacks
from .places import Place


@dataclass(eq=False)
class InPlace(Place):
    """The app's own Compose project, replaced where it runs. `enter` records the stage reached;
    `recreate`: a restart, which recreates the containers whose configuration did not change too."""

    enter: Callable[[str], None]
    recreate: bool = False
    previous: Release | None = field(default=None, init=False)  # the release it replaces
    services: list[str] = field(default_factory=list, init=False)  # all but those scaled to zero
    started: float = field(default=0.0, init=False)
    restored: str | None = field(default=None, init=False)  # what a failed start or gate left serving instead

    def stack(self, release: Release) -> ComposeStack:
        return stacks.release_stack(self.app, compose.compose_program(), release)

    def compose(self, stack: ComposeStack, argv: list[str], what: str) -> None:
        compose.run(argv, self.env, stack.directory, self.out, what)

    def prepare(self, resolved: dict, previous: Release | None, web: Web | None) -> None:
        """The app's own project, on networks of middock's subnets (`stack.json`)."""
        self.previous, self.services = previous, health.running_services(resolved)
        config = networks.prepared(self.client, resolved, self.app.name)
        compose.write_config(config, releases.folder(self.app, self.release.number) / stacks.BESIDE)

    def run(self) -> None:
        """Start, gate, switch."""
        self.start()
        self.gate()
        self.switch()

    def start(self) -> None:
        """`docker compose up` over the running stack; on failure, the previous release is back."""
        self.enter("up")
        self.out.step("Starting the stack: docker compose up")
        stack = self.stack(self.release)
        self.started = time.time()
        try:
            with kept_logs.kept_when_replaced(self.client, self.app, self.previous, self.out.warn):
                self.compose(stack, stack.up(recreate=self.recreate), "docker compose up")
        except MiddockError:
            self.restore_previous()
            raise

    def gate(self) -> None:
        """Every service healthy within MIDDOCK_HEALTH_TIMEOUT; on failure, the previous release is back."""
        timeout = settings.env_value(self.env, "MIDDOCK_HEALTH_TIMEOUT")
        self.enter("health")
        self.out.step(f"Waiting for the services to be healthy (up to {timeout:g}s)")
        problems = health.wait_healthy(
            self.client, self.app.name, self.services, timeout, self.out.detail, self.started
        )
        if problems:
            for problem in problems:
                self.out.detail(problem)
            self.restore_previous()
            raise MiddockError(f"health check failed: {problems[0]}")
        for service in self.services:
            self.out.detail(f"{service}: ok")

    def switch(self) -> None:
        """The new release serves as it started; one that ran behind the edge before is retired,
        with its routes."""
        if self.previous and self.previous.slot:
            self.leave_edge(self.previous)

    def leave_edge(self, previous: Release) -> None:
        """The app ran behind the edge and now runs in place: retire that release and its routes."""
        self.out.step(f"Stopping release {previous.number}, which ran behind the edge")
        old = self.stack(previous)
        kept_logs.keep(
            self.client, self.app, previous.number, old.project, self.out.warn, stacks.on_swarm(self.app, previous)
        )
        with contextlib.suppress(MiddockError):
            self.compose(old, old.down(), "docker compose down")
        stacks.remove_project(self.client, old.project)  # what down left: its networks (middock's own)
        Edge(self.app.home).forget(self.app)

    def restore_previous(self) -> None:
        """Bring back the previous release after a failed start or health gate (or stop a first
        deploy), keeping the last lines of the failed release's containers it removes."""
        new = self.stack(self.release)
        if self.previous is None or self.previous.slot:
            self.out.step("Stopping the failed stack")
            with kept_logs.kept_when_replaced(self.client, self.app, self.release, self.out.warn):
                self.compose(new, new.down(), "docker compose down")
            if self.previous is None:
                self.restored = "stopped the new stack; nothing is running"
            return
        self.out.step(f"Rolling back to release {self.previous.number}")
        stack = self.stack(self.previous)
        with kept_logs.kept_when_replaced(self.client, self.app, self.release, self.out.warn):
            self.compose(stack, stack.up(), "docker compose up")
        self.restored = f"rolled back to release {self.previous.number} ({self.previous.commit[:7]}), which is serving"
