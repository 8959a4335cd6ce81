"""The last lines of a release's containers, kept when they are removed, so that `logs APP`
reaches back across deploys.

Docker forgets a container's output with the container, and a release's containers go after a
switch and drain (behind the edge: with the next deploy, or a prune, since they are kept
stopped until then), when `docker compose up` replaces them in place, when an app moves
between in place and the edge, or when the release fails its deploy (there, its lines say why:
`releases:output` shows them under the deploy's own). Just before, their last lines (up to
KEPT_LINES a container, with Docker's timestamps) are written to
`~/.middock/APP/logs/RELEASE/SERVICE-N.log`, outside the release's folder so that they outlive
its pruning; the logs of the last KEPT_RELEASES releases are kept. Keeping them is a courtesy
to whoever reads them later: whatever goes wrong with it, the deploy goes on, with a warning.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections import Counter, deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from ..runtime import swarm
from ..runtime.compose import NUMBER_LABEL, SERVICE_LABEL
from ..runtime.engine import docker
from ..state.apps import App
from ..state.releases import Release, numbered
from .health import project_containers

KEPT_LINES = 10_000
KEPT_RELEASES = 20
Warn = Callable[[str], None]


def folder(app: App) -> Path:
    return app.state / "logs"


@dataclass(frozen=True)
class LogLine:
    """One line of a container's output as Docker gives it (`raw`: its RFC 3339 timestamp, a
    space, the text), with the release that ran the container and the container's label."""

    release: int
    label: str
    raw: bytes

    @property
    def stamp(self) -> bytes:
        return self.raw.split(b" ", 1)[0]

    @property
    def text(self) -> bytes:
        """The line as the container printed it (its timestamp aside)."""
        return self.raw.partition(b" ")[2]


def split_lines(raw: bytes) -> list[bytes]:
    """Docker's lines: one per `\\n` (a `\\r` inside a line, a progress bar's, stays in it)."""
    return [line for line in raw.split(b"\n") if line]


def labels(members: list[tuple[str, str]]) -> list[str]:
    """For each (service, container number): the service, or `service.N` when it ran several."""
    per_service = Counter(service for service, _ in members)
    return [f"{service}.{number}" if per_service[service] > 1 else service for service, number in members]


def merge(kept: list[LogLine], live: list[LogLine], tail: int | None) -> list[LogLine]:
    """The kept lines of earlier releases (by release, then time) before the live release's
    (by time); the last `tail` of them all, or every one with None."""
    ordered = sorted(kept, key=lambda line: (line.release, line.stamp)) + sorted(live, key=lambda line: line.stamp)
    return ordered if tail is None else ordered[max(len(ordered) - tail, 0) :]


def kept_releases(app: App) -> list[int]:
    """The releases whose lines are kept, oldest first."""
    return numbered(folder(app))


def member(path: Path) -> tuple[str, str]:
    """The service and container number a kept file holds the lines of: `web-2.log`."""
    service, _, number = path.stem.rpartition("-")
    return service, number


def release_lines(app: App, release: int, service: str | None, wanted: int | None) -> list[LogLine]:
    """A release's kept lines (of `service`, or of all): the last `wanted` of each container."""
    files = sorted(folder(app).joinpath(str(release)).glob("*.log"))
    members = [member(path) for path in files]
    found = []
    for path, (name, _), label in zip(files, members, labels(members), strict=True):
        if service in (None, name):
            lines = deque(split_lines(path.read_bytes()), maxlen=wanted)
            found += [LogLine(release, label, line) for line in lines]
    return found


SHOWN_WHEN_FAILED = 100  # lines of each container under a failed deploy's output (`logs` has them all)


def by_container(app: App, release: int) -> dict[str, list[bytes]]:
    """A release's kept lines, each container's under its label (what a failed deploy shows)."""
    found: dict[str, list[bytes]] = {}
    for line in release_lines(app, release, None, None):
        found.setdefault(line.label, []).append(line.text)
    return found


def read(app: App, service: str | None, wanted: int | None) -> list[LogLine]:
    """The kept lines (of `service`, or of all), enough of the newest releases' for the last
    `wanted` lines (every release's with None)."""
    found: list[LogLine] = []
    for release in reversed(kept_releases(app)):
        if wanted is not None and len(found) >= wanted:
            break
        found = release_lines(app, release, service, wanted) + found
    return found


def of_containers(containers: list) -> dict[str, tuple[str, bytes]]:
    """Container id -> the file its lines are kept in (`web-2.log`) and its last lines."""
    found = {}
    for container in containers:
        try:
            lines = container.logs(tail=KEPT_LINES, timestamps=True)
        except docker.errors.APIError:
            continue  # gone already, or its own log driver keeps nothing to read (`none`)
        service, number = container.labels.get(SERVICE_LABEL, "unknown"), container.labels.get(NUMBER_LABEL, "1")
        found[container.id] = (f"{service}-{number}.log", lines)
    return found


def of_stack(client: docker.DockerClient, stack: str) -> dict[str, bytes]:
    """A Swarm stack's last lines, one file per task slot (`web-2.log`), from every node."""
    sources = swarm.log_sources(client, stack, None)
    tasks = swarm.LogLines(client, sources)
    found: dict[str, list[bytes]] = {}
    for name, service in sources.items():
        options = {"stdout": True, "stderr": True, "timestamps": True, "details": True}
        for raw in split_lines(b"".join(service.logs(tail=KEPT_LINES, **options))):
            _, label, shown = tasks.split(name, raw)  # label: web.2@node-3
            slot = label.rpartition("@")[0].rpartition(".")[2]
            found.setdefault(f"{name}-{slot}.log", []).append(shown)
    return {file: b"\n".join(lines) + b"\n" for file, lines in found.items()}


def save(app: App, release: int, files: Mapping[str, bytes]) -> None:
    """Write the lines (each file whole, or not at all: a full disk leaves nothing half written),
    after what was kept of the release before; then forget all but the last KEPT_RELEASES
    releases' lines. Only the deploy user reads them (0600): an app may print its secrets."""
    if not any(files.values()):
        return
    target = folder(app) / str(release)
    target.mkdir(mode=0o700, parents=True, exist_ok=True)
    for name, lines in files.items():
        if not lines:
            continue
        path = target / name
        earlier = path.read_bytes() if path.exists() else b""  # its containers ran twice: a failed deploy's restore
        partial = path.with_name(f".{name}.{os.getpid()}.tmp")
        try:
            fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(earlier + lines)
            os.replace(partial, path)
        finally:
            partial.unlink(missing_ok=True)
    for old in kept_releases(app)[:-KEPT_RELEASES]:
        shutil.rmtree(folder(app) / str(old), ignore_errors=True)


@contextlib.contextmanager
def courtesy(release: int, warn: Warn) -> Iterator[None]:
    """Keeping lines is a courtesy: nothing that goes wrong with it may fail the deploy; it warns."""
    try:
        yield
    except Exception as error:
        warn(f"the last lines of release {release}'s containers were not kept: {error}")


def keep(client: docker.DockerClient, app: App, release: int, project: str, warn: Warn, on_swarm: bool = False) -> None:
    """Keep the last lines of every container of `project` (a stack's tasks `on_swarm`) with
    `release`, just before they are removed."""
    with courtesy(release, warn):
        if on_swarm:
            save(app, release, of_stack(client, project))
        else:
            save(app, release, dict(of_containers(project_containers(client, project)).values()))


@contextlib.contextmanager
def kept_when_replaced(client: docker.DockerClient, app: App, release: Release | None, warn: Warn) -> Iterator[None]:
    """Around a `docker compose up` or `down` in place: keep the last lines of `release`'s
    containers that it removes (read just before; those it leaves running keep theirs)."""
    before: dict[str, tuple[str, bytes]] = {}
    if release is not None:
        with courtesy(release.number, warn):
            before = of_containers(project_containers(client, app.name))
    try:
        yield
    finally:
        if release is not None and before:
            with courtesy(release.number, warn):
                remaining = {container.id for container in project_containers(client, app.name)}
                save(app, release.number, dict(kept for id_, kept in before.items() if id_ not in remaining))
