"""Blue/green behind the edge: a release starts beside the live one (a Compose project on this
server, the containers the last switch kept, or a stack on the Swarm: places.py, each prepared
already), passes its gate, takes every new request in one atomic flip of the edge, and the old
release drains and goes.

Nothing the old release serves is touched until the new one has passed its gate, and a failed
gate removes only the new containers, so a failed deploy never costs a request. Services listed
in MIDDOCK_STOP_FIRST never run twice: the old ones stop just before the new ones start (and
start again if the new release fails its gate).
"""

from __future__ import annotations

import http.client
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .. import settings, waiting
from ..edge import maintenance, routes
from ..edge.control import Edge
from ..errors import MiddockError
from ..output import Output
from ..runtime import overrides, side_by_side
from ..runtime.engine import docker
from ..runtime.side_by_side import Web
from ..state import releases
from ..state.apps import App
from ..state.releases import Release
from . import health
from .places import ComposePlace, SwarmPlace, place_of

# A web container that has just started may not listen yet: it is asked again soon, then less
# and less often, up to every LAST_ASK seconds.
FIRST_ASK, LAST_ASK = 0.02, 0.25


def http_problem(endpoint: str, path: str, host: str | None) -> str | None:
    """None when `GET path` on a web container (`ADDR:PORT`) answers 2xx or 3xx."""
    address, _, port = endpoint.rpartition(":")
    conn = http.client.HTTPConnection(address, int(port), timeout=5)
    try:
        conn.request("GET", path, headers={"Host": host} if host else {})
        status = conn.getresponse().status
    except (OSError, http.client.HTTPException) as error:
        return f"GET {path} on {endpoint}: {error.__class__.__name__} {error}".strip()
    finally:
        conn.close()
    return None if 200 <= status < 400 else f"GET {path} on {endpoint} answered {status}"


def drain(edge: Edge, app: App, slot: str, env: dict[str, str], out: Output, what: str) -> None:
    """Let a slot the edge no longer sends to finish the requests it is serving (up to
    MIDDOCK_DRAIN_TIMEOUT) before its containers go."""
    timeout = settings.env_value(env, "MIDDOCK_DRAIN_TIMEOUT")
    out.step(f"Draining {what} (up to {timeout:g}s)")
    took = edge.drain(app, slot, timeout)
    if took is None:
        out.detail(f"requests still in flight after {timeout:g}s (MIDDOCK_DRAIN_TIMEOUT) are cut off")
    else:
        out.detail(f"drained in {took:.1f}s")


@dataclass
class Beside:
    """One release started beside the live one (`new`, where it runs), and everything its switch
    needs. Without a web service (an app on the Swarm that serves no HTTP) there is no edge:
    start, gate, retire."""

    app: App
    release: Release
    previous: Release | None
    env: dict[str, str]
    resolved: dict
    web: Web | None
    out: Output
    client: docker.DockerClient
    enter: Callable[[str], None]
    new: ComposePlace | SwarmPlace
    edge: Edge = field(init=False)
    stopped: list[str] = field(default_factory=list)  # the previous release's stop-first services we stopped
    replaced_in_place: bool = False  # the previous release ran in place and was stopped for the switch

    def __post_init__(self) -> None:
        self.edge = Edge(self.app.home)
        self.old = place_of(self.app, self.previous, self.client, self.env, self.out) if self.previous else None
        self.first = side_by_side.stop_first(self.env)
        self.counts = {name: overrides.replicas(spec) for name, spec in self.resolved["services"].items()}

    @property
    def services(self) -> list[str]:
        return [s for s in health.running_services(self.resolved) if s not in self.first]

    @property
    def in_place_before(self) -> bool:
        return self.previous is not None and self.old is not None and self.old.name == self.app.name

    def run(self) -> None:
        """Start, gate, switch; the deploy then says the new release is live and retires the old
        one (`retire`). A failure up to the switch removes only the new release's containers."""
        try:
            self.start()
            self.gate()
            self.swap_stop_first()
            self.switch()
        except MiddockError:
            self.abandon()
            raise

    def start(self) -> None:
        if self.web:
            self.edge.require_running()
            self.new.open_slot(self.edge, self.previous)
        self.enter("up")
        beside = f" beside release {self.previous.number}" if self.previous else ""
        self.out.step(f"Starting release {self.release.number}{beside}: {self.new.started_by} ({self.release.slot})")
        self.new.start(self.services)

    def gate(self) -> None:
        timeout = settings.env_value(self.env, "MIDDOCK_HEALTH_TIMEOUT")
        deadline = time.monotonic() + timeout
        self.enter("health")
        self.out.step(f"Waiting for the services to be healthy (up to {timeout:g}s)")
        self.wait(self.services, deadline)
        if not self.web:
            return
        path = side_by_side.health_path(self.env)
        domains = routes.load(self.app).domains
        expected = self.counts.get(self.web.service, 1)
        self.out.step(f"Checking GET {path} on {self.web.service} ({expected} container{'s' * (expected > 1)})")
        pauses = waiting.doubling(FIRST_ASK, LAST_ASK)
        while True:  # the endpoints afresh each time: Swarm may replace a task that fails to start
            endpoints = self.new.endpoints(self.web)
            problems = [p for e in endpoints if (p := http_problem(e, path, domains[0] if domains else None))]
            if len(endpoints) < expected:
                problems.append(f"{self.web.service}: {len(endpoints)} of {expected} containers are up")
            if not problems:
                break
            if time.monotonic() >= deadline:
                raise MiddockError(f"health check failed: {problems[0]}")
            time.sleep(next(pauses))
        self.new.route(endpoints)
        self.out.detail(f"{self.web.service}: answers")

    def wait(self, services: list[str], deadline: float) -> None:
        problems = self.new.gate(services, self.counts, max(deadline - time.monotonic(), 0))
        if problems:
            for problem in problems:
                self.out.detail(problem)
            raise MiddockError(f"health check failed: {problems[0]}")
        for service in services:
            self.out.detail(f"{service}: ok")

    def swap_stop_first(self) -> None:
        """Stop the old stop-first services, then start the new ones and gate them."""
        if not self.first:
            return
        if self.old:
            self.out.step(f"Stopping {', '.join(self.first)} of release {self.previous.number} first")  # type: ignore[union-attr]
            self.stopped = list(self.first)
            self.old.stop(self.first)
        self.out.step(f"Starting {', '.join(self.first)}")
        self.new.resume(self.first)
        timeout = settings.env_value(self.env, "MIDDOCK_HEALTH_TIMEOUT")
        self.wait(self.first, time.monotonic() + timeout)

    def switch(self) -> None:
        """The flip: from now on every new request reaches the new release."""
        self.enter("switch")
        if self.in_place_before:
            self.out.step(f"Stopping release {self.previous.number}, which ran in place")  # type: ignore[union-attr]
            self.old.remove()  # type: ignore[union-attr]
            self.replaced_in_place = True
        if self.web:
            serving = routes.load(self.app).serving
            self.out.step(f"Switching the edge to release {self.release.number}")
            problem = maintenance.install_page(self.app, releases.folder(self.app, self.release.number) / "checkout")
            if problem:
                self.out.warn(problem)
            try:
                self.edge.switch(self.app, self.release.slot)
            except MiddockError:
                self.edge.switch(self.app, serving)
                raise
        releases.set_live(self.app, self.release.number)

    def retire(self) -> None:
        """Drain the old release, then stop it (the new one is live already). Behind the edge on
        this server its containers are kept, stopped, until the app's next deploy, so that a
        rollback to it only starts them again; elsewhere they are removed."""
        if not (self.previous and self.old) or self.replaced_in_place:
            return
        self.enter("drain")
        if self.web and self.previous.slot:
            drain(self.edge, self.app, self.previous.slot, self.env, self.out, f"release {self.previous.number}")
        if self.web and self.old.keeps_when_retired:
            self.out.step(f"Stopping release {self.previous.number} (kept, stopped, for an instant rollback)")
            self.old.keep()
            releases.set_kept(self.app, releases.Kept(self.previous.number, self.old.name))
            return
        self.out.step(f"Stopping release {self.previous.number}")
        self.old.remove()

    def abandon(self) -> None:
        """After a failed gate: remove the new release's containers (their last lines kept: they
        say why it failed), restart what we stopped."""
        self.out.step(f"Removing release {self.release.number}'s containers")
        self.new.remove()
        if self.replaced_in_place and self.old:
            self.out.step(f"Starting release {self.previous.number} again")  # type: ignore[union-attr]
            self.old.start([])
        elif self.stopped and self.old:
            self.out.step(f"Starting {', '.join(self.stopped)} of release {self.previous.number} again")  # type: ignore[union-attr]
            self.old.resume(self.stopped)
