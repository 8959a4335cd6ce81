"""Speed at scale, printed as `name: value` lines.

- rollback: `middock rollback APP` timed as a whole command (the CLI, the deploy worker, the
  gate, the switch: until the command returns), median and p95 of --runs, alternating between the
  two releases, each a rollback to the containers the last switch kept stopped: unloaded, next to
  the same by hand in the same run (`docker start` of the same kept containers at once, then GET
  of the health path on the web container's port until it answers), and under two loads (LOADS:
  the edge tests' own, as hard as it can, and a steady one), whose failed requests are counted.
  On a one-service busybox app behind the edge, and on examples/hello (two services built from
  the server's Python, each with a healthcheck, run by exec).
  Target: median unloaded at most 0.6 s (busybox) and 1.1 s (hello), 0 failed.
- healthcheck: a one-line push of the one-service busybox app behind the edge whose web service
  has a healthcheck run every 30 s (Docker's default interval, which Docker waits before its
  first check), against the same app without one, alternating, median of --runs each, in one
  run. Target: ratio at most 1.2.
- many apps: --apps apps (default 100), one busybox web service each, behind one edge, their
  first pushes 4 at a time (every other one given its port first with `apps:set APP port N`):
  how many went live; a one-line push of one app with 2 apps present against the same with all
  of them (median of --runs each, in one run; target: ratio at most 1.3); `apps` and
  `status APP` with all of them (median of 5; target: under 0.5 s); the memory of the edge's
  processes (HAProxy's master and workers, Caddy); the failed requests of 5 neighbours, each
  under load, during another app's 3 deploys, a rollback and a restart (target: 0).

Everything runs in a throwaway MIDDOCK_HOME with unique app names and free ports, and its
containers, images, edge and files are removed afterwards.

    python3 bench/scale.py [--runs N] [--apps N] [--only rollback|healthcheck|apps]
"""

from __future__ import annotations

import argparse
import http.client
import json
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import docker

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from edge import push, server_with_edge  # noqa: E402
from support.apps import WEB_APP_COMPOSE, write_web_app  # noqa: E402
from support.load import Load  # noqa: E402
from support.middock import Server, Workdir  # noqa: E402
from support.ports import free_port  # noqa: E402

ONE_SERVICE = WEB_APP_COMPOSE.split("  worker:")[0]  # the edge tests' web app, without its worker
# The same with a healthcheck Docker first runs after 30 s (its default interval)
CHECKED_EVERY_30S = ONE_SERVICE.replace(
    "    init: true\n",
    '    init: true\n    healthcheck:\n      test: ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/"]\n'
    "      interval: 30s\n",
)


def timed(server: Server, *args: str) -> float:
    started = time.perf_counter()
    server.middock(*args)
    return time.perf_counter() - started


def median_p95(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


# Two loads: the edge tests' own, every client sending back to back (it takes both cores of a
# small server, so every step of a rollback waits its turn), and a steady one, each client
# pausing 20 ms between requests (up to 300 requests a second: a busy hour of a few hundred users).
LOADS = {"full": {"pace": 0}, "steady": {"pace": 0.02}}


def rollbacks(server: Server, app: str, port: int, runs: int, name: str, slow_path: str, health_path: str) -> None:
    """Time `rollback` `runs` times unloaded, each next to the same by hand, then `runs` times
    under each load; each back to the release the last switch kept."""
    times, by_hand = [], []
    for _ in range(runs):
        server.wait_idle(app)
        time.sleep(1)  # the old release has drained and stopped
        by_hand.append(start_by_hand(server, app, health_path))
        times.append(timed(server, "rollback", app))
    report(f"rollback_{name}_unloaded", times)
    report(f"rollback_{name}_by_hand", by_hand)
    print(f"rollback_{name}_unloaded_ratio: {statistics.median(times) / statistics.median(by_hand):.2f}")
    for load_name, options in LOADS.items():
        times = []
        with Load(port, slow_path=slow_path, max_seconds=600, **options) as load:
            for _ in range(runs):
                server.wait_idle(app)
                time.sleep(1)  # the load settles on the new release, as a user's would
                times.append(timed(server, "rollback", app))
            time.sleep(1)
        label = f"rollback_{name}_{load_name}_load"
        report(label, times)
        print(f"{label}_failed_requests: {len(load.report.failures)} of {load.report.total}")
        if load.report.failures:
            print(f"{label}_first_failures: {load.report.failures[:3]}")


def report(label: str, times: list[float]) -> None:
    median, p95 = median_p95(times)
    print(f"{label}_median_s: {median:.3f}")
    print(f"{label}_p95_s: {p95:.3f}")
    print(f"{label}_runs: {len(times)}")


def start_by_hand(server: Server, app: str, health_path: str) -> float:
    """A rollback's floor, by hand: `docker start` of the containers the last switch kept, all at
    once, then GET `health_path` on the web container's loopback port until it answers 2xx or
    3xx; its time. They are stopped again afterwards (untimed), kept as they were."""
    project = json.loads((server.home / ".middock" / app / "kept.json").read_text())["project"]
    client = docker.from_env(version="auto")
    containers = client.containers.list(all=True, filters={"label": f"com.docker.compose.project={project}"})
    ports = [
        int(binding["HostPort"])
        for container in containers
        for bindings in (container.attrs["HostConfig"].get("PortBindings") or {}).values()
        for binding in bindings or []
    ]
    started = time.perf_counter()
    starting = [subprocess.Popen(["docker", "start", c.name], stdout=subprocess.DEVNULL) for c in containers]
    if any([process.wait() for process in starting]):
        raise SystemExit(f"docker start of {project} failed")
    while not answers(ports[0], health_path):
        time.sleep(0.01)
    took = time.perf_counter() - started
    stopping = [subprocess.Popen(["docker", "stop", c.name], stdout=subprocess.DEVNULL) for c in containers]
    for process in stopping:
        process.wait()
    return took


def answers(port: int, path: str) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        return 200 <= conn.getresponse().status < 400
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def rollback_bench(server: Server, root: Path, runs: int) -> None:
    app = server.create_app("roll")
    work = Workdir(root / "rollback")
    work.git("remote", "add", "production", str(server.repo_path(app)))
    for version in ("v1", "v2"):
        push(work, version, lambda v: write_web_app(work, v, ONE_SERVICE))
    rollbacks(server, app, server.app_port(app), runs, "busybox", "/cgi-bin/slow", "/")

    hello = server.create_app("hello")
    work = Workdir(root / "hello")
    shutil.copytree(ROOT / "examples" / "hello", work.path, dirs_exist_ok=True)
    work.git("remote", "add", "production", str(server.repo_path(hello)))
    for greeting in ("Hello", "Hi"):
        push(work, greeting, lambda g: work.write("middock.env", (work.path / "middock.env").read_text() + f"#{g}\n"))
    rollbacks(server, hello, server.app_port(hello), runs, "example", "/", "/")


def healthcheck_bench(server: Server, root: Path, runs: int) -> None:
    """A push of the app with a healthcheck every 30 s against the same app without one."""
    apps = {"no_healthcheck": ONE_SERVICE, "healthcheck_30s": CHECKED_EVERY_30S}
    works = {}
    for name in apps:
        app = server.create_app(name.replace("_", "")[:10])
        works[name] = Workdir(root / name)
        works[name].git("remote", "add", "production", str(server.repo_path(app)))
    times: dict[str, list[float]] = {name: [] for name in apps}
    for i in range(runs + 1):  # the first push of each is not timed
        for name, compose in apps.items():
            work = works[name]
            took = push(work, f"v{i}", lambda v, work=work, compose=compose: write_web_app(work, v, compose))
            if i:
                times[name].append(took)
    for name, samples in times.items():
        print(f"push_{name}_median_s: {statistics.median(samples):.3f}")
    ratio = statistics.median(times["healthcheck_30s"]) / statistics.median(times["no_healthcheck"])
    print(f"push_healthcheck_30s_ratio: {ratio:.2f}")


def first_pushes(server: Server, root: Path, names: list[str]) -> list[str]:
    """Create the apps and push each one's first release, 4 at a time; every other app gets its
    port first. Returns the apps that went live, and prints why the others did not."""
    live: list[str] = []
    failed: dict[str, str] = {}
    lock = threading.Lock()

    def one(name: str, index: int) -> None:
        if index % 2:
            server.middock("apps:set", name, "port", str(free_port()))
        work = Workdir(root / "apps" / name)
        work.git("remote", "add", "production", str(server.repo_path(name)))
        write_web_app(work, "v1", ONE_SERVICE)
        work.commit("v1")
        pushed = work.push().stderr
        with lock:
            if "is live" in pushed:
                live.append(name)
            else:
                failed[name] = ([line for line in pushed.splitlines() if line.startswith(" !")] or ["?"])[-1]

    for start in range(0, len(names), 4):
        threads = [threading.Thread(target=one, args=(n, start + i)) for i, n in enumerate(names[start : start + 4])]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    for name, why in sorted(failed.items()):
        print(f"apps_not_live: {name}: {why}")
    return live


def edge_memory(server: Server) -> float:
    """MiB of resident memory of the edge's processes: HAProxy's master and its workers, Caddy."""
    edge = server.home / ".middock" / "_edge"
    roots = [int((edge / f"{proxy}.pid").read_text().split()[0]) for proxy in ("haproxy", "caddy")]
    pids = set(roots)
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":", 1) for line in status.read_text().splitlines() if ":" in line)
        except OSError:
            continue
        if int(fields.get("PPid", "0").strip() or 0) in roots:
            pids.add(int(status.parent.name))
    total = 0
    for pid in pids:
        try:
            lines = Path(f"/proc/{pid}/status").read_text().splitlines()
        except OSError:
            continue
        total += sum(int(line.split()[1]) for line in lines if line.startswith("VmRSS"))
    return total / 1024


def deploy_cost(server: Server, work: Workdir, runs: int, tag: str) -> float:
    return statistics.median(
        push(work, f"{tag}{i}", lambda v: write_web_app(work, v, ONE_SERVICE)) for i in range(runs)
    )


def apps_bench(server: Server, root: Path, count: int, runs: int) -> None:
    names = [server.create_app(f"s{i:03d}") for i in range(count)]
    subject = names[0]
    work = Workdir(root / "subject")
    work.git("remote", "add", "production", str(server.repo_path(subject)))
    push(work, "v1", lambda v: write_web_app(work, v, ONE_SERVICE))
    first_pushes(server, root, names[1:2])
    with_two = deploy_cost(server, work, runs, "two")
    started = time.perf_counter()
    live = first_pushes(server, root, names[2:])
    print(f"apps_first_pushes_seconds: {time.perf_counter() - started:.1f}")
    print(f"apps_live: {len(live) + 2} of {count}")
    with_all = deploy_cost(server, work, runs, "all")
    print(f"deploy_with_2_apps_s: {with_two:.3f}")
    print(f"deploy_with_{count}_apps_s: {with_all:.3f}")
    print(f"deploy_cost_ratio: {with_all / with_two:.2f}")
    print(f"apps_command_s: {statistics.median(timed(server, 'apps') for _ in range(5)):.3f}")
    print(f"status_command_s: {statistics.median(timed(server, 'status', subject) for _ in range(5)):.3f}")
    print(f"edge_memory_mib: {edge_memory(server):.1f}")

    neighbours = [
        Load(server.app_port(name), keepalive=1, fresh=1, slow=1, max_seconds=600, pace=0) for name in live[:5]
    ]
    for load in neighbours:
        load.start()
    for i in range(3):
        push(work, f"n{i}", lambda v: write_web_app(work, v, ONE_SERVICE))
    server.middock("rollback", subject)
    server.middock("ps:restart", subject)
    time.sleep(1)
    reports = [load.stop() for load in neighbours]
    failed = sum(len(report.failures) for report in reports)
    print(f"neighbours_failed_requests: {failed} of {sum(report.total for report in reports)}")
    if failed:
        print(f"neighbours_first_failures: {[f for report in reports for f in report.failures][:3]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--apps", type=int, default=100)
    parser.add_argument("--only", choices=("rollback", "healthcheck", "apps"))
    args = parser.parse_args()
    with server_with_edge("middock-bench-scale-") as (server, root):
        if args.only in (None, "rollback"):
            rollback_bench(server, root, args.runs)
        if args.only in (None, "healthcheck"):
            healthcheck_bench(server, root, args.runs)
        if args.only in (None, "apps"):
            apps_bench(server, root, args.apps, min(args.runs, 3))


if __name__ == "__main__":
    main()
