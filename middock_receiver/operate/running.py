"""The running app, outside a deploy: its containers (`ps`), their output (`logs`), and
stopping or restarting them (`ps:stop`, `ps:restart SERVICE`).

What changes the stack as a whole (a restart behind the edge, a new scale, `ps:start`) is a
deploy of the live release without a build (cli/running.py); what is here acts on the live
release's containers as they are.
"""

from __future__ import annotations

import os
import select
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from typing import BinaryIO

from .. import process
from ..edge.control import Edge
from ..errors import MiddockError
from ..pipeline import health, kept_logs, stacks
from ..runtime import compose, engine_api, swarm
from ..runtime.engine import docker, docker_client
from ..runtime.plan import without_git
from ..state import processes, releases
from ..state.apps import App
from ..state.releases import Release

FOLLOW_POLL = 0.5


def live_release(app: App) -> Release:
    live = releases.live(app)
    if live is None:
        raise MiddockError(f"{app.name} has no live release; deploy it first")
    return live


def uptime(started: str | None) -> float | None:
    """Seconds since Docker's `StartedAt` (nanoseconds and a Z, which Python does not parse)."""
    if not started:
        return None
    moment = datetime.strptime(started[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc)
    return max((datetime.now(timezone.utc) - moment).total_seconds(), 0.0)


def inspected_containers(project: str) -> list[dict]:
    """What `docker inspect` shows of each of the project's containers, one-offs aside: read
    straight over the daemon's socket (engine_api.py), through the SDK when it has none."""
    path = engine_api.socket_path()
    if path is None:
        return [container.attrs for container in health.project_containers(docker_client(), project)]
    reader = engine_api.EngineReader(path)
    try:
        return reader.project_containers(project)
    finally:
        reader.close()


def service_rows(inspected: list[dict]) -> list[dict]:
    """Each container, for `status`, `ps` and the dashboard: service, number, name, state,
    health, when it started and how often Docker restarted it."""
    rows = []
    for attrs in inspected:
        labels, state = attrs["Config"].get("Labels") or {}, attrs["State"]
        rows.append(
            {
                "service": labels.get(compose.SERVICE_LABEL, "?"),
                "number": int(labels.get(compose.NUMBER_LABEL, "1") or 1),
                "container": attrs["Name"].lstrip("/"),
                "state": state.get("Status"),
                "health": state.get("Health", {}).get("Status"),
                "started": state.get("StartedAt") if state.get("Status") == "running" else None,
                "restarts": attrs.get("RestartCount", 0),
            }
        )
    return sorted(rows, key=lambda row: (row["service"], row["number"], row["container"]))


def container_rows(app: App, release: Release | None) -> list[dict]:
    """The release's containers (on the Swarm: its tasks, each on its node); with no release,
    whatever runs as the app's own project."""
    if release and stacks.on_swarm(app, release):
        return swarm.task_rows(docker_client(), stacks.project(app, release))
    return service_rows(inspected_containers(stacks.project(app, release) if release else app.name))


def service_status(app: App) -> list[dict]:
    """The live release's containers, for `status`."""
    return container_rows(app, releases.live(app))


def ps(app: App) -> list[dict]:
    """Every container of the live release: service, state, health, uptime, restarts, and (behind
    the edge) the release, slot and route it serves."""
    live = live_release(app)
    urls = Edge(app.home).urls(app) if live.slot else []
    rows = container_rows(app, live)
    for row in rows:
        row.update(uptime=uptime(row["started"]), release=live.number, slot=live.slot or None, routes=urls)
    return rows


def compose_live(app: App, *args: str) -> None:
    """Run `docker compose ARGS` against the live release's stack."""
    stack = stacks.release_stack(app, compose.compose_program(), live_release(app))
    result = process.capture(stack.command(*args), without_git(os.environ), stack.directory)
    if result.returncode != 0:
        raise MiddockError(f"docker compose {args[0]} failed: {compose.compose_error(result.stderr)}")


def stop(app: App) -> None:
    """Stop the live release's containers (on the Swarm: no task of any service); they stay
    stopped, a reboot too, until ps:start."""
    live = live_release(app)
    processes.set_stopped(app, True)
    if stacks.on_swarm(app, live):
        client = docker_client()
        name = stacks.project(app, live)
        swarm.scale(client, name, dict.fromkeys(swarm.services(client, name), 0))
    else:
        compose_live(app, "stop")


def restart_service(app: App, service: str) -> None:
    live = live_release(app)
    stacks.check_service(app, live, service)
    if stacks.on_swarm(app, live):
        swarm.services(docker_client(), stacks.project(app, live))[service].force_update()
    else:
        compose_live(app, "restart", service)


def client_gone(fd: int) -> bool:
    """Whether whoever reads our output has gone: a pipe or socket whose other end closed (an
    SSH client that went away closes sshd's end). A terminal never reports it."""
    poller = select.poll()
    poller.register(fd, select.POLLERR | select.POLLHUP)
    return bool(poller.poll(0))


class LogWriter:
    """Lines from several containers to one output, each marked with its release and prefixed
    with its service (and number): `r3 2026-05-01T12:00:00Z web.2: …`."""

    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self.lock = threading.Lock()
        self.broken = threading.Event()

    def write(self, line: kept_logs.LogLine) -> None:
        stamp, _, text = line.raw.rstrip(b"\n").partition(b" ")
        shown = f"r{line.release} {stamp.decode(errors='replace')[:19]}Z {line.label}: ".encode() + text + b"\n"
        with self.lock:
            try:
                self.out.write(shown)
                self.out.flush()
            except (BrokenPipeError, OSError):
                self.broken.set()


def labels(containers: list) -> dict[str, str]:
    """`web.1`, `web.2`…: the service, and the container's number when the service is scaled."""
    members = [
        (container.labels.get(compose.SERVICE_LABEL, "?"), container.labels.get(compose.NUMBER_LABEL, "1"))
        for container in containers
    ]
    return {container.id: label for container, label in zip(containers, kept_logs.labels(members), strict=True)}


def logs(app: App, out: BinaryIO, tail: int | None, follow: bool, service: str | None) -> int:
    """The app's output: the last `tail` lines of the live release's containers merged by time,
    after the lines kept of earlier releases' (kept_logs.py), newest last; with `follow`, the
    live release's new lines as they come, until Ctrl-C or the reader goes away."""
    live = live_release(app)
    if service:
        stacks.check_service(app, live, service)
    client = docker_client()
    if stacks.on_swarm(app, live):
        return swarm_logs(client, app, live, out, tail, follow, service)
    containers = [
        c
        for c in health.project_containers(client, stacks.project(app, live))
        if service is None or c.labels.get(compose.SERVICE_LABEL) == service
    ]
    if not containers:
        raise MiddockError(f"{app.name} has no containers of release {live.number} (ps:start starts them)")
    names = labels(containers)
    writer = LogWriter(out)
    if not follow:
        lines = [
            kept_logs.LogLine(live.number, names[container.id], line)
            for container in containers
            for line in kept_logs.split_lines(container.logs(timestamps=True, tail="all" if tail is None else tail))
        ]
        return write_across_releases(app, writer, lines, tail, service)
    return follow_logs(containers, live.number, names, writer, 10 if tail is None else tail)


def write_across_releases(
    app: App, writer: LogWriter, live: list[kept_logs.LogLine], tail: int | None, service: str | None
) -> int:
    """The live release's lines after those kept of earlier releases: the last `tail` of all."""
    wanted = None if tail is None else max(tail - len(live), 0)
    for line in kept_logs.merge(kept_logs.read(app, service, wanted), live, tail):
        writer.write(line)
    return 0


def follow_logs(containers: list, release: int, names: dict[str, str], writer: LogWriter, tail: int) -> int:
    """Stream every container's output; return when the reader goes away, on Ctrl-C, or when
    every container has stopped. The streams are threads of this one process: nothing stays
    behind it."""
    streams = (
        (pump, (container.logs(stream=True, follow=True, timestamps=True, tail=tail), release, names[container.id]))
        for container in containers
    )
    return follow_streams(streams, writer)


def follow_streams(streams: Iterator[tuple[Callable, tuple]], writer: LogWriter) -> int:
    """Open each stream (`streams` opens one as it is read) and pump it on a thread of its own
    (`target(*args, writer)`), until the reader goes away or every stream has ended; Ctrl-C at any
    moment, even while the first streams already print and others still open, ends it too."""
    running = []
    try:
        for target, args in streams:
            thread = threading.Thread(target=target, args=(*args, writer), daemon=True)
            thread.start()
            running.append(thread)
        fd = writer.out.fileno()
        while any(t.is_alive() for t in running) and not writer.broken.is_set() and not client_gone(fd):
            time.sleep(FOLLOW_POLL)
    except KeyboardInterrupt:
        pass
    return 0


def pump(stream, release: int, label: str, writer: LogWriter) -> None:  # noqa: ANN001
    try:
        for line in stream:
            writer.write(kept_logs.LogLine(release, label, line))
            if writer.broken.is_set():
                return
    except docker.errors.DockerException:
        return


def swarm_logs(
    client: docker.DockerClient,
    app: App,
    live: Release,
    out: BinaryIO,
    tail: int | None,
    follow: bool,
    service: str | None,
) -> int:
    """Every task's output on every node, prefixed with its service, slot and node."""
    writer = LogWriter(out)
    sources = swarm.log_sources(client, stacks.project(app, live), service)
    lines = swarm.LogLines(client, sources)
    options = {"stdout": True, "stderr": True, "timestamps": True, "details": True}
    if not follow:
        found = []
        for name, source in sources.items():
            for raw in kept_logs.split_lines(b"".join(source.logs(tail="all" if tail is None else tail, **options))):
                _, label, shown = lines.split(name, raw)
                found.append(kept_logs.LogLine(live.number, label, shown))
        return write_across_releases(app, writer, found, tail, service)
    streams = (
        (pump_swarm, (name, source.logs(follow=True, tail=10 if tail is None else tail, **options), live.number, lines))
        for name, source in sources.items()
    )
    return follow_streams(streams, writer)


def pump_swarm(name: str, stream, release: int, lines: swarm.LogLines, writer: LogWriter) -> None:  # noqa: ANN001
    try:
        for raw in stream:
            for line in raw.splitlines():
                _, label, shown = lines.split(name, line)
                writer.write(kept_logs.LogLine(release, label, shown))
    except docker.errors.DockerException:
        return
