"""The health gate: every service's containers running, and healthy where they have a
healthcheck, within the timeout. Read through the docker SDK from the compose labels."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime, timezone

from .. import waiting
from ..runtime import overrides
from ..runtime.compose import ONEOFF_LABEL, PROJECT_LABEL, SERVICE_LABEL
from ..runtime.engine import docker


def running_services(resolved: dict) -> list[str]:
    """The services that must be running: all but those scaled to zero."""
    return [name for name, spec in resolved["services"].items() if overrides.replicas(spec) != 0]


def project_containers(client: docker.DockerClient, project: str) -> list:
    """The project's containers, one-offs aside; one removed while listing is left out, not an
    error (a killed `docker compose up` leaves the daemon finishing what it asked for)."""
    label = {"label": f"{PROJECT_LABEL}={project}"}
    containers = client.containers.list(all=True, filters=label, ignore_removed=True)
    return [c for c in containers if c.labels.get(ONEOFF_LABEL) != "True"]


def created_at(container) -> float:  # noqa: ANN001
    """When Docker created the container (its ISO time, nanoseconds and all), as a timestamp."""
    stamp = container.attrs.get("Created", "")[:19]
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc).timestamp() if stamp else 0.0


def problems(
    client: docker.DockerClient,
    project: str,
    services: list[str],
    since: float = 0.0,
    checks: QuickChecks | None = None,
) -> list[str]:
    """What keeps the stack from being healthy now; empty when it is. A container created since
    `since` that Docker has already restarted is crashing, even if it runs this instant (every
    service has a restart policy, so a crash shows as a restart, not as an exit). With `checks`,
    a container whose healthcheck Docker has not run yet (it waits its `interval` first) runs it
    now, and passes if it passes."""
    by_service: dict[str, list] = {name: [] for name in services}
    for container in project_containers(client, project):
        by_service.setdefault(container.labels.get(SERVICE_LABEL, "?"), []).append(container)
    if checks is not None:
        checks.run([c for service in services for c in by_service[service] if starting(c, since)])
    found = []
    for service in services:
        if not by_service[service]:
            found.append(f"{service}: no container")
        for container in by_service[service]:
            state = container.attrs["State"]
            health = state.get("Health", {}).get("Status")
            if restarted(container, since) or state.get("Status") != "running":
                found.append(f"{service}: {container.name} {crash_description(container, since)}")
            elif health not in (None, "healthy") and not (checks is not None and container.id in checks.passed):
                found.append(f"{service}: {container.name} is {health}")
    return found


def crash_description(container, since: float) -> str:  # noqa: ANN001
    """What a crashed container is doing. One that Docker has just started again reads exit code
    0 (the running one's), so it is described by its restarts instead of a wrong exit code."""
    state = container.attrs["State"]
    if not restarted(container, since):
        return f"is {state.get('Status')} (exit code {state.get('ExitCode')})"
    if state.get("Status") == "running":
        return f"keeps restarting ({container.attrs.get('RestartCount')} restarts)"
    return f"keeps restarting (exit code {state.get('ExitCode')})"


def restarted(container, since: float) -> bool:  # noqa: ANN001
    """Whether Docker restarted a container created since `since`: it crashed."""
    return container.attrs.get("RestartCount", 0) > 0 and created_at(container) >= since - 1


def starting(container, since: float) -> bool:  # noqa: ANN001
    """Running, not crashing, and its healthcheck not yet run by Docker."""
    state = container.attrs["State"]
    return (
        state.get("Status") == "running"
        and state.get("Health", {}).get("Status") == "starting"
        and not restarted(container, since)
    )


class QuickChecks:
    """Healthchecks run now rather than after Docker's first `interval`, for containers started
    again, not created (an instant rollback): every container's at once, and one that passed is
    not run again while Docker catches up."""

    def __init__(self) -> None:
        self.passed: set[str] = set()

    def run(self, containers: list) -> None:
        """Run the healthchecks of those that have not passed yet, all at once."""

        def check(container) -> None:  # noqa: ANN001
            if passes(container):
                self.passed.add(container.id)

        runners = [threading.Thread(target=check, args=(c,)) for c in containers if c.id not in self.passed]
        for runner in runners:
            runner.start()
        for runner in runners:
            runner.join()


def passes(container) -> bool:  # noqa: ANN001
    """Whether the container's own healthcheck passes, run now (within its timeout)."""
    test = (container.attrs.get("Config", {}).get("Healthcheck") or {}).get("Test") or []
    if not test or test[0] not in ("CMD", "CMD-SHELL"):
        return False
    argv = test[1:] if test[0] == "CMD" else ["/bin/sh", "-c", test[1]]
    timeout = (container.attrs["Config"]["Healthcheck"].get("Timeout") or 30_000_000_000) / 1e9
    api = container.client.api
    exec_id = api.exec_create(container.id, argv)["Id"]  # attached: exec_start returns when it ends
    runner = threading.Thread(target=api.exec_start, args=(exec_id,), daemon=True)
    runner.start()
    runner.join(timeout)
    return not runner.is_alive() and api.exec_inspect(exec_id).get("ExitCode") == 0


def wait_healthy(
    client: docker.DockerClient,
    project: str,
    services: list[str],
    timeout: float,
    on_wait: Callable[[str], None] = lambda _: None,
    since: float = 0.0,
    checks: QuickChecks | None = None,
) -> list[str]:
    """Poll until healthy or the timeout; returns the remaining problems (empty on success).
    With `checks` (containers started again, not created: an instant rollback), healthchecks
    run at once and the stack is polled often."""
    poll = 0.05 if checks is not None else waiting.POLL
    return waiting.until_clear(lambda: problems(client, project, services, since, checks), timeout, on_wait, poll)
