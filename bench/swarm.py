"""The Swarm's benchmarks, printed as `name: value` lines.

On a 3-node Swarm made on this machine for the run (tests/support/swarm_bed.py: network namespaces, one
dockerd per node, middock's own registry on the manager), with the edge of the tests:

- push-to-live: `git push` of a one-line change until the release is live, for the tests' web
  app (3 web tasks and a worker) on the Swarm, against the same app on one server (the manager
  alone, target compose, behind the same edge); median of --runs, interleaved, each push once
  the one before it has retired what it replaced (as a user's next push finds it). Each app's
  change is its own, so neither build comes from the other's cache. Target: ratio at most 1.5.
- the stages of those pushes, median seconds each, from the moment the pusher sees the step that
  begins it to the next one's: receive (git and the hook, up to the deploy's first line),
  checkout_config, build (the build script; on one server, then the release's networks and
  ports), registry (the Swarm's push of its images, its stack file), start (`docker stack
  deploy`; `docker compose up`, which waits for the containers to start), gate (every task
  running; every container healthy), http_check (GET on every web container), switch (the edge,
  up to the end of the push).
- failed requests during 3 deploys of the Swarm app under the load of the edge tests (3
  keep-alive clients, 3 opening a connection per request, 2 of 3-second requests). Target: 0.
- rollback: the whole `middock rollback APP` command on the Swarm app (it deploys the kept
  release's stack file again: no build, no push; there is no kept stack to start), against the
  same app on one server (its kept containers, started again); median of --runs.

    python3 bench/swarm.py [--runs N]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from support.apps import write_web_app  # noqa: E402
from support.swarm import COMPOSE, Load, SwarmServer, SwarmWork, start_middock  # noqa: E402
from support.swarm_bed import SwarmBed, reap_stale_beds  # noqa: E402

STEPS = (  # a push's stages after `receive`, each begun by the first step line that starts with its words
    ("checkout_config", ("Checking out",)),
    ("build", ("Running ",)),
    ("registry", ("Pushing ", "No image to push")),
    ("start", ("Starting release",)),
    ("gate", ("Waiting for the services",)),
    ("http_check", ("Checking GET",)),
    ("switch", ("Switching the edge",)),
)
STAGES = ("receive", *(name for name, _ in STEPS))
STEP = "-----> "


def timed_push(work: SwarmWork, version: str) -> tuple[float, dict[str, float]]:
    """Push a one-line change (a new image); the seconds until it is live, and each stage's, read
    from when the pusher sees each step line."""
    write_web_app(work, version, COMPOSE)
    work.write("www/built.txt", f"{version} of {work.app}")  # type: ignore[attr-defined]
    work.commit(version)
    begun = {"receive": 0.0}  # git and the hook, up to the deploy's first line
    output = []
    started = time.perf_counter()
    pushing = subprocess.Popen(
        work.push_argv(), cwd=work.path, env=work.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    assert pushing.stderr is not None
    for line in pushing.stderr:
        output.append(line)
        text = line.removeprefix("remote:").strip()
        for name, words in STEPS if text.startswith(STEP) else ():
            if name not in begun and text[len(STEP) :].startswith(words):
                begun[name] = time.perf_counter() - started
    pushing.wait(timeout=600)
    elapsed = time.perf_counter() - started
    if "is live" not in "".join(output):
        raise SystemExit(f"push of {version} failed:\n{''.join(output)}")
    order = sorted(begun, key=lambda name: begun[name])
    ends = [begun[name] for name in order[1:]] + [elapsed]
    return elapsed, {name: end - begun[name] for name, end in zip(order, ends, strict=True)}


def print_stages(target: str, pushes: list[dict[str, float]]) -> None:
    for stage in STAGES:
        times = [push[stage] for push in pushes if stage in push]
        if times:
            print(f"{target}_stage_{stage}_s: {statistics.median(times):.3f}")


def app(server: SwarmServer, folder: Path, target: str) -> SwarmWork:
    name = server.create_app(f"bench-{target}")
    server.middock("apps:set", name, "target", target)
    work = SwarmWork(folder / target, server)
    work.git("remote", "add", "production", str(server.repo_path(name)))
    work.app = name  # type: ignore[attr-defined]
    timed_push(work, "v0")
    return work


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    reap_stale_beds()
    folder = Path(tempfile.mkdtemp(prefix="mbs"))
    with SwarmBed(registry=False, swarm=False, dispatcher_heartbeat=1) as bed:  # the admin's steps make the Swarm
        bed.load_image("middock-test/busybox")
        server = SwarmServer(folder / "home", bed)
        try:
            start_middock(server)
            on_swarm, alone = app(server, folder, "swarm"), app(server, folder, "compose")
            swarm_pushes, alone_pushes = [], []
            for number in range(1, args.runs + 1):
                for work, pushes in ((on_swarm, swarm_pushes), (alone, alone_pushes)):
                    pushes.append(timed_push(work, f"v{number}"))  # then its retiring loads no other push:
                    server.wait_idle(work.app)  # type: ignore[attr-defined]
            spread = statistics.median(total for total, _ in swarm_pushes)
            single = statistics.median(total for total, _ in alone_pushes)
            print(f"push_to_live_swarm_3_nodes_s: {spread:.3f}")
            print(f"push_to_live_one_server_s: {single:.3f}")
            print(f"push_to_live_swarm_ratio: {spread / single:.2f}")
            print_stages("swarm", [stages for _, stages in swarm_pushes])
            print_stages("one_server", [stages for _, stages in alone_pushes])

            server.port = server.app_port(on_swarm.app)  # type: ignore[attr-defined]
            load = Load(server, folder)
            for number in range(args.runs + 1, args.runs + 4):
                timed_push(on_swarm, f"v{number}")
            report = load.stop()
            print(f"swarm_deploys_under_load: 3 in one load run of {report['total']} requests")
            print(f"swarm_failed_requests: {len(report['failures'])}")
            if report["failures"]:
                print(f"swarm_first_failures: {report['failures'][:3]}")

            for name, work in (("swarm", on_swarm), ("one_server", alone)):
                times = []
                for _ in range(args.runs):
                    server.wait_idle(work.app)  # type: ignore[attr-defined]
                    started = time.perf_counter()
                    server.middock("rollback", work.app)  # type: ignore[attr-defined]
                    times.append(time.perf_counter() - started)
                print(f"rollback_{name}_median_s: {statistics.median(times):.3f}")
        finally:
            server.cleanup()
    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
