"""The health gate: every service's containers running, and healthy where they have a
healthcheck, within the timeout. Read through the docker SDK from the compose labels.

A container's healthcheck is run by the gate itself, by exec, as soon as the container runs and
again after each failure: Docker runs its first one only after the healthcheck's `interval` (30 s
by default), and a push would wait that long for nothing. Docker's own verdict counts too."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from datetime import datetime, timezone

from .. import waiting
from ..runtime import overrides
from ..runtime.compose import PROJECT_LABEL, SERVICE_LABEL, one_off
from ..runtime.engine import docker


def running_services(resolved: dict) -> list[str]:
    """The services that must be running: all but those scaled to zero."""
    return [name for name, spec in resolved["services"].items() if overrides.replicas(spec) != 0]


def project_containers(client: docker.DockerClient, project: str) -> list:
    """The project's containers, one-offs aside; one removed while listing is left out, not an
    error (a killed `docker compose up` leaves the daemon finishing what it asked for)."""
    label = {"label": f"{PROJECT_LABEL}={project}"}
    containers = client.containers.list(all=True, filters=label, ignore_removed=True)
    return [c for c in containers if not one_off(c.labels)]


def created_at(container) -> float:  # noqa: ANN001
    """When Docker created the container (its ISO time, nanoseconds and all), as a timestamp."""
    stamp = container.attrs.get("Created", "")[:19]
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc).timestamp() if stamp else 0.0


def problems(
    client: docker.DockerClient,
    project: str,
    services: list[str],
    since: float = 0.0,
    probes: Probes | None = None,
) -> list[str]:
    """What keeps the stack from being healthy now; empty when it is. A container created since
    `since` that Docker has already restarted is crashing, even if it runs this instant (every
    service has a restart policy, so a crash shows as a restart, not as an exit). With `probes`,
    a running container Docker does not call healthy yet has its own healthcheck run now (Docker
    waits its `interval` first), and passes once that passed (or, in an instant rollback, if the
    edge's GET stands in for it)."""
    by_service: dict[str, list] = {name: [] for name in services}
    for container in project_containers(client, project):
        by_service.setdefault(container.labels.get(SERVICE_LABEL, "?"), []).append(container)
    if probes is not None:
        probes.watch([c for service in services for c in by_service[service] if unproven(c, since)])
    found = []
    for service in services:
        if not by_service[service]:
            found.append(f"{service}: no container")
        for container in by_service[service]:
            state = container.attrs["State"]
            health = state.get("Health", {}).get("Status")
            if restarted(container, since) or state.get("Status") != "running":
                found.append(f"{service}: {container.name} {crash_description(container, since)}")
            elif health not in (None, "healthy") and not (probes is not None and probes.proven(container)):
                found.append(f"{service}: {container.name} is {health}")
    return found


RESTARTING = "keeps restarting"


def crash_description(container, since: float) -> str:  # noqa: ANN001
    """What a crashed container is doing. One that Docker has just started again reads exit code
    0 (the running one's), so it is described by its restarts instead of a wrong exit code."""
    state = container.attrs["State"]
    if not restarted(container, since):
        return f"is {state.get('Status')} (exit code {state.get('ExitCode')})"
    if state.get("Status") == "running":
        return f"{RESTARTING} ({container.attrs.get('RestartCount')} restarts)"
    return f"{RESTARTING} (exit code {state.get('ExitCode')})"


def crashing(found: list[str]) -> bool:
    """Whether a container has crashed: it stays so (Docker counts its restarts), so no waiting helps."""
    return any(RESTARTING in problem for problem in found)


def restarted(container, since: float) -> bool:  # noqa: ANN001
    """Whether Docker restarted a container created since `since`: it crashed."""
    return container.attrs.get("RestartCount", 0) > 0 and created_at(container) >= since - 1


def unproven(container, since: float) -> bool:  # noqa: ANN001
    """Running, not crashing, and not healthy yet in Docker's eyes: starting (its first check
    waits its `interval`), or unhealthy (its checks failed so far)."""
    state = container.attrs["State"]
    return (
        state.get("Status") == "running"
        and state.get("Health", {}).get("Status") in ("starting", "unhealthy")
        and not restarted(container, since)
    )


def healthcheck_command(container) -> list[str] | None:  # noqa: ANN001
    """What Docker runs in the container as its healthcheck: a CMD as it is, a CMD-SHELL under
    the container's shell (its SHELL, else /bin/sh -c); None for none (NONE, or no healthcheck)."""
    config = container.attrs.get("Config", {})
    test = (config.get("Healthcheck") or {}).get("Test") or []
    if len(test) < 2:
        return None
    if test[0] == "CMD":
        return test[1:]
    if test[0] == "CMD-SHELL":
        return [*(config.get("Shell") or ["/bin/sh", "-c"]), " ".join(test[1:])]
    return None


# After a failed run the next comes soon (an app that has just started may not listen yet),
# then twice as long after each, up to every LAST_RETRY seconds: what the gate waits beyond the
# app's own start stays short, and a slow start is not asked twenty times a second.
FIRST_RETRY, LAST_RETRY = 0.1, 0.5


class Probes:
    """The containers' own healthchecks, each run by exec as soon as its container runs, then
    again after each failure until it passes: Docker would run its first only after its
    `interval` (30 s by default). One pass proves the container healthy, as it does for Docker;
    a failure proves nothing (as within Docker's start period): only the gate's timeout, or a
    crash, fails it."""

    def __init__(self, by_edge: frozenset[str] = frozenset()) -> None:
        self.by_edge = by_edge  # services whose health the edge's GET proves instead: never probed
        self.passed: set[str] = set()  # the ids of the containers whose healthcheck passed
        self.passing = threading.Event()  # set when one passes: the gate looks again at once
        self.lock = threading.Lock()
        self.running: dict[str, threading.Event] = {}  # container id -> what stops its probe

    def watch(self, containers: list) -> None:
        """Probe each container with a healthcheck to run that is not probed or passed yet."""
        with self.lock:
            for container in containers:
                if container.id in self.running or self.proven(container):
                    continue
                if healthcheck_command(container) is None:
                    continue
                stop = self.running[container.id] = threading.Event()
                threading.Thread(target=self.probe, args=(container, stop), daemon=True).start()

    def proven(self, container) -> bool:  # noqa: ANN001
        """Whether the container's healthcheck passed, or the edge's GET stands in for it."""
        return container.id in self.passed or container.labels.get(SERVICE_LABEL) in self.by_edge

    def probe(self, container, stop: threading.Event) -> None:  # noqa: ANN001
        """Run the container's healthcheck until it passes or the probe is stopped."""
        pauses = waiting.doubling(FIRST_RETRY, LAST_RETRY)
        while not stop.is_set():
            if passes(container):
                self.passed.add(container.id)
                self.passing.set()
                return
            stop.wait(next(pauses))

    def stop(self) -> None:
        """Stop probing (the gate is over); a container watched again is probed afresh."""
        with self.lock:
            for stop in self.running.values():
                stop.set()
            self.running.clear()


def passes(container) -> bool:  # noqa: ANN001
    """Whether the container's own healthcheck passes, run now (within its timeout), as Docker
    runs it: as the container's user, in its working directory, with its environment."""
    command = healthcheck_command(container)
    timeout = (container.attrs["Config"]["Healthcheck"].get("Timeout") or 30_000_000_000) / 1e9
    api = container.client.api
    try:
        exec_id = api.exec_create(container.id, command)["Id"]
    except docker.errors.APIError:
        return False  # not running (any more): the gate says what it is doing

    def run() -> None:
        with contextlib.suppress(docker.errors.APIError, OSError):
            api.exec_start(exec_id)  # attached: returns when the command ends

    runner = threading.Thread(target=run, daemon=True)
    runner.start()
    runner.join(timeout)
    if runner.is_alive():
        return False
    try:
        return api.exec_inspect(exec_id).get("ExitCode") == 0
    except docker.errors.APIError:
        return False


def proven_by_edge(resolved: dict, web: str) -> frozenset[str]:
    """For an instant rollback: the web service, whose own healthcheck the edge's GET of the health
    path stands in for (its containers passed that healthcheck when they went live, and the GET,
    run next, proves they answer now), unless another service waits for it to be healthy
    (`depends_on` with `condition: service_healthy`): then its healthcheck must pass."""
    for spec in resolved["services"].values():
        depends_on = spec.get("depends_on") or {}
        if isinstance(depends_on, dict) and (depends_on.get(web) or {}).get("condition") == "service_healthy":
            return frozenset()
    return frozenset({web})


def wait_healthy(
    client: docker.DockerClient,
    project: str,
    services: list[str],
    timeout: float,
    on_wait: Callable[[str], None] = lambda _: None,
    since: float = 0.0,
    probes: Probes | None = None,
) -> list[str]:
    """Poll until healthy, a container crashes, or the timeout; returns the remaining problems
    (empty on success). Healthchecks run at once (`probes`: those whose containers an instant
    rollback started itself, probed as each started), and each pass is looked at at once."""
    probes = Probes() if probes is None else probes
    try:
        return waiting.until_clear(
            lambda: problems(client, project, services, since, probes),
            timeout,
            on_wait,
            wake=probes.passing,
            hopeless=crashing,
        )
    finally:
        probes.stop()
