"""Rootless Docker against the root daemon, side by side in one run on this machine, printed as
`name: value` lines (`root_…`, `rootless_…` and their ratios).

- the edge's added latency on the port path: sequential GETs through the app's port on the edge
  (HAProxy) against the same GETs straight to the web container's loopback port, each on a new
  connection; p50 and p99 in ms. Target: rootless added p50 at most 1 ms.
- the cost of rootlesskit's port forwarding: the straight GETs of both sides (the root daemon's
  published port against rootlesskit's builtin port driver).
- push-to-live: `git push` of a one-line change until the release is live behind the edge, median
  of --runs. Target: rootless at most 1.15 times the root daemon's.
- rollback: `middock rollback` until the release before is live, median of --runs.

The root daemon's side is a throwaway MIDDOCK_HOME of root's, as in bench/edge.py; the rootless
side is a fresh deploy user made by install.sh (its own rootless daemon), whose commands and
pushes run as that user. Both are removed afterwards.

    python3 bench/rootless.py [--runs N] [--requests N]
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import docker

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from edge import get, percentiles  # noqa: E402
from support.apps import write_web_app  # noqa: E402
from support.images import BUSYBOX_IMAGE, ensure_busybox_image  # noqa: E402
from support.middock import GIT_IDENTITY, Server, Workdir  # noqa: E402
from support.ports import free_port  # noqa: E402
from support.rootless import docker_as, load_image  # noqa: E402
from support.ssh_server import remove_user, run_install, unique_user, world_readable_dir  # noqa: E402


class RootSide:
    """A MIDDOCK_HOME of root's: its apps run on the root daemon."""

    name = "root"

    def __init__(self, base: Path) -> None:
        self.server = Server(base / "home")
        self.server.start_edge()
        self.home = self.server.home

    def middock(self, *args: str) -> str:
        return self.server.middock(*args).stdout

    def work(self, base: Path, app: str) -> Workdir:
        work = Workdir(base / f"work-{app}")
        work.git("remote", "add", "production", str(self.server.repo_path(app)))
        return work

    def git(self, work: Workdir, *args: str) -> subprocess.CompletedProcess:
        return work.git(*args, check=False)

    def containers(self, *filters: str) -> list[dict]:
        client = docker.from_env(version="auto")
        return [c.attrs for c in client.containers.list(filters={"label": list(filters)})]

    def cleanup(self) -> None:
        self.server.cleanup()


class RootlessSide:
    """install.sh's deploy user: its commands and pushes run as it, on its own rootless daemon."""

    name = "rootless"

    def __init__(self, base: Path) -> None:
        self.user = unique_user()
        installed = run_install(self.user, base, "--http-port", str(free_port()), "--https-port", str(free_port()))
        if installed.returncode != 0:
            raise SystemExit(f"install.sh failed:\n{installed.stdout}{installed.stderr}")
        self.bin = str(base / "venv" / "bin" / "middock")
        load_image(self.user, BUSYBOX_IMAGE)
        self.home = Path(pwd.getpwnam(self.user).pw_dir)

    def as_user(self, *argv: str, cwd: str = "/") -> subprocess.CompletedProcess:
        identity = [f"{key}={value}" for key, value in GIT_IDENTITY.items()]
        command = ["runuser", "-u", self.user, "--", "env", f"HOME={self.home}", *identity, *argv]
        return subprocess.run(command, capture_output=True, text=True, cwd=cwd, timeout=600)

    def middock(self, *args: str) -> str:
        result = self.as_user(self.bin, *args)
        if result.returncode != 0:
            raise SystemExit(f"middock {' '.join(args)} failed:\n{result.stderr}")
        return result.stdout

    def work(self, base: Path, app: str) -> Workdir:
        work = Workdir(base / f"work-{app}")
        self.git(work, "remote", "add", "production", str(self.home / f"{app}.git"))
        return work

    def git(self, work: Workdir, *args: str) -> subprocess.CompletedProcess:
        """git as the user, in a work tree root writes (so it is given to the user first)."""
        subprocess.run(["chown", "-R", self.user, str(work.path)], check=True)
        return self.as_user("git", "-c", f"safe.directory={work.path}", *args, cwd=str(work.path))

    def containers(self, *filters: str) -> list[dict]:
        args = [arg for label in filters for arg in ("--filter", f"label={label}")]
        listed = docker_as(self.user, "ps", "-q", *args).stdout.split()
        return json.loads(docker_as(self.user, "inspect", *map(bytes.decode, listed)).stdout) if listed else []

    def cleanup(self) -> None:
        for app in json.loads(self.middock("apps", "--json")):
            self.as_user(self.bin, "apps:destroy", app["app"], "--force")
        self.as_user(self.bin, "edge:stop")
        remove_user(self.user)


def push(side: RootSide | RootlessSide, work: Workdir, version: str) -> float:
    write_web_app(work, version)
    side.git(work, "add", "-A")
    side.git(work, "commit", "-q", "-m", version)
    started = time.perf_counter()
    result = side.git(work, "push", "production", "main")
    elapsed = time.perf_counter() - started
    if "is live" not in result.stderr:
        raise SystemExit(f"{side.name}: push of {version} failed:\n{result.stderr}")
    return elapsed


def rollback(side: RootSide | RootlessSide, app: str) -> float:
    started = time.perf_counter()
    said = side.middock("rollback", app)
    elapsed = time.perf_counter() - started
    if "is live" not in said:
        raise SystemExit(f"{side.name}: rollback failed:\n{said}")
    return elapsed


def container_port(side: RootSide | RootlessSide, app: str) -> int:
    """The loopback port of the live release's web container."""
    project = json.loads(side.middock("status", app, "--json"))["live"]["project"]
    (container,) = side.containers(f"com.docker.compose.project={project}", "com.docker.compose.service=web")
    return int(container["NetworkSettings"]["Ports"]["8080/tcp"][0]["HostPort"])


def measure(side: RootSide | RootlessSide, base: Path, runs: int) -> dict[str, list[float]]:
    """A web app behind the edge on this side: its push and rollback times, and its two ports."""
    app = f"bench-{side.name}-{os.getpid()}"
    side.middock("apps:create", app)
    work = side.work(base, app)
    push(side, work, "v0")
    pushes, rollbacks = [], []
    for number in range(1, runs + 1):
        pushes.append(push(side, work, f"v{number}"))
        rollbacks.append(rollback(side, app))
    edge_port = json.loads((side.home / ".middock" / app / "settings.json").read_text())["port"]
    return {"push": pushes, "rollback": rollbacks, "ports": [edge_port, container_port(side, app)]}


def latency(ports: dict[str, tuple[int, int]], requests: int) -> dict[str, dict[str, list[float]]]:
    """Straight and through-the-edge GETs of both sides, interleaved so that all see the same machine."""
    for edge_port, direct_port in ports.values():
        for _ in range(200):  # warm up
            get(edge_port)
            get(direct_port)
    samples = {name: {"direct": [], "edge": []} for name in ports}
    for _ in range(requests):
        for name, (edge_port, direct_port) in ports.items():
            samples[name]["direct"].append(get(direct_port))
            samples[name]["edge"].append(get(edge_port))
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    ensure_busybox_image(docker.from_env(version="auto"))
    base = world_readable_dir("mbr-")
    sides: list[RootSide | RootlessSide] = []
    try:
        sides = [RootSide(Path(tempfile.mkdtemp(prefix="mbroot-"))), RootlessSide(base)]
        found = {side.name: measure(side, base, args.runs) for side in sides}
        samples = latency({name: tuple(found[name]["ports"]) for name in found}, args.requests)
        for name in found:
            (d50, d99), (e50, e99) = percentiles(samples[name]["direct"]), percentiles(samples[name]["edge"])
            print(f"{name}_direct_p50_ms: {d50:.3f}")
            print(f"{name}_direct_p99_ms: {d99:.3f}")
            print(f"{name}_edge_p50_ms: {e50:.3f}")
            print(f"{name}_edge_p99_ms: {e99:.3f}")
            print(f"{name}_edge_added_p50_ms: {e50 - d50:.3f}")
            print(f"{name}_edge_added_p99_ms: {e99 - d99:.3f}")
            print(f"{name}_push_to_live_s: {statistics.median(found[name]['push']):.3f}")
            print(f"{name}_rollback_s: {statistics.median(found[name]['rollback']):.3f}")
        direct = {name: percentiles(samples[name]["direct"]) for name in found}
        print(f"port_forwarding_added_p50_ms: {direct['rootless'][0] - direct['root'][0]:.3f}")
        print(f"port_forwarding_added_p99_ms: {direct['rootless'][1] - direct['root'][1]:.3f}")
        for what in ("push", "rollback"):
            ratio = statistics.median(found["rootless"][what]) / statistics.median(found["root"][what])
            print(f"{what}_rootless_ratio: {ratio:.2f}")
    finally:
        for side in sides:
            side.cleanup()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
