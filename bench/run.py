"""The push and checkout benchmarks, printed as `name: value` lines (seconds: 3 decimals, ratios: 2).

- push-to-live: the wall time of `git push` of a one-line change of the tests' busybox app
  (the push returns once the release is live), against the same steps run by hand in the same
  run: `git archive | tar -x` into a fresh folder, the build script with the same environment,
  `docker compose up -d --wait` of the same compose file, as its own compose project (the
  published port comes from `WEB_PORT`, so both stacks run side by side and each deploy replaces
  only its own previous release). Target: ratio at most 1.15.
- compose_build_push-to-live: the same pair for the app whose `web` is Compose's own `build: .`
  (a Dockerfile FROM the tests' busybox image whose last layer copies the changed page, so a
  push rebuilds that one layer); by hand, `docker compose build` replaces the build script.
  Target: ratio at most 1.05.
- two_images_push-to-live: the same pair for examples/two-images behind the edge, as it deploys
  (two images, each a real build: an index of the standard library and the api's tests, a page
  a module rendered and gzipped), each push a change to both images' code; by hand its three
  build scripts run one after the other, where a push runs the two of the same number side by
  side. Target: ratio at most 0.8.
- checkout: middock's dulwich checkout of a generated 20,000-file, ~80 MB repo, first release
  and a one-file-change release (from the first release's folder), each against
  `git archive COMMIT | tar -x` of the same commit. Target: one-file ratio at most 0.15.

Every figure is the median of --runs runs. Everything runs in temporary folders with unique
app names and ports, and the containers, images and files it made are removed afterwards.

    python3 bench/run.py [--runs N] [--only push|compose-build|two-images|checkout]

`--only push` runs the three push-to-live pairs, `--only compose-build` or `--only two-images`
one of them alone.
"""

from __future__ import annotations

import argparse
import itertools
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors
from dulwich.repo import Repo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from support.apps import COMPOSE, write_busybox_app  # noqa: E402
from support.images import ensure_busybox_image  # noqa: E402
from support.middock import Server, Workdir  # noqa: E402
from support.ports import free_port  # noqa: E402
from support.web import http_get  # noqa: E402

from middock_receiver.pipeline.checkout import checkout  # noqa: E402

TWO_IMAGES = ROOT / "examples" / "two-images"
REPO_FILES = 20_000
REPO_FOLDERS = 250
REPO_BYTES = 80_000_000
# The tests' busybox app with `web` built by Compose from DOCKERFILE (a `{port}` to fill in)
COMPOSE_BUILD = COMPOSE.replace("image: ${{MIDDOCK_APP}}-web:${{IMAGE_TAG}}", "build: .")
DOCKERFILE = """FROM middock-test/busybox
CMD ["httpd", "-f", "-p", "8080", "-h", "/www"]
COPY page.html /www/index.html
"""
STAGES = (  # a word of each deploy step's `-----> ` line, and the stage it starts
    ("Checking out", "checkout"),
    ("Repository shape", "shape"),
    ("Running ", "build"),
    ("with Compose (build:)", "compose_build"),
    ("docker compose up", "compose_up"),
    ("healthy", "health"),
    ("is live", "live"),
)


def run(argv: list[str], **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(argv, capture_output=True, text=True, **kwargs)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {result.returncode}:\n{result.stdout}{result.stderr}")
    return result


def timed(action: Callable[[], object]) -> float:
    """Wall time of `action`, after flushing earlier writes so they do not land in it."""
    os.sync()
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def archive_extract(repo: Path, commit: str, dest: Path) -> None:
    """`git archive COMMIT | tar -x -C dest` into a fresh folder."""
    dest.mkdir()
    archive = subprocess.Popen(["git", "-C", str(repo), "archive", commit], stdout=subprocess.PIPE)
    assert archive.stdout is not None
    tar = subprocess.run(["tar", "-x", "-C", str(dest)], stdin=archive.stdout)
    archive.stdout.close()
    if archive.wait() != 0 or tar.returncode != 0:
        raise SystemExit(f"git archive {commit} | tar -x failed")


def timed_push(work: Workdir) -> tuple[float, dict[str, float]]:
    """The wall time of `git push`, and how long each streamed deploy step took."""
    os.sync()
    started = time.perf_counter()
    proc = subprocess.Popen(
        ["git", "push", "production", "main"],
        cwd=work.path,
        env=work.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert proc.stderr is not None
    marks: list[tuple[str, float]] = [("receive", 0.0)]
    lines = []
    for raw in proc.stderr:
        line = raw.decode(errors="replace")
        lines.append(line)
        if line.startswith("remote: -----> "):
            default = "start" if len(marks) == 1 else "other"
            name = next((stage for word, stage in STAGES if word in line), default)
            marks.append((name, time.perf_counter() - started))
    proc.wait()
    elapsed = time.perf_counter() - started
    if proc.returncode != 0 or marks[-1][0] != "live":
        raise SystemExit(f"git push failed ({proc.returncode}):\n{''.join(lines)}")
    marks.append(("end", elapsed))
    stages: dict[str, float] = defaultdict(float)  # each stage until the next; `live`: until git exits
    for (name, start), (_, end) in zip(marks, marks[1:], strict=False):
        stages[name] += end - start
    return elapsed, stages


def write_compose_build_app(work: Workdir, port: str, page: str) -> None:
    """The busybox app with Compose's own build: `web` is `build: .`, its last layer page.html."""
    work.write("compose.yaml", COMPOSE_BUILD.format(port=port))
    work.write("Dockerfile", DOCKERFILE)
    work.write("page.html", page)


def change_page(work: Workdir, page: str) -> None:
    work.write("page.html", page)


def shows_page(body: str, commit: str, page: str) -> bool:
    return body == page


def write_two_images(work: Workdir, port: str, page: str) -> None:
    """examples/two-images, web published on `port`, `page` in the code of both images."""
    shutil.copytree(TWO_IMAGES, work.path, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
    compose = (work.path / "compose.yaml").read_text()
    work.write("compose.yaml", compose.replace("${HTTP_PORT:-8080}", port))
    change_both_images(work, page)


def change_both_images(work: Workdir, page: str) -> None:
    """A line of each image's code changes: both images rebuild from their COPY on."""
    for name in ("api/api.py", "web/web.py"):
        work.write(name, f"{(TWO_IMAGES / name).read_text()}# {page}")


def shows_both_images(body: str, commit: str, page: str) -> bool:
    """Whether the site's footer says web and api both run the images of `commit`."""
    return f"web {commit[:12]}, api {commit[:12]}" in body


@dataclass(frozen=True)
class Shape:
    """A repository shape push-to-live is measured on: its figures' prefix, how the app is
    written (its published port, its first page), the build steps by hand (one after the
    other), how a run changes the app and how its page shows the change is live, and whether it
    deploys behind the edge."""

    prefix: str
    write: Callable[[Workdir, str, str], None]
    build: list[list[str]]
    change: Callable[[Workdir, str], None] = change_page
    shows: Callable[[str, str, str], bool] = shows_page
    edge: bool = False


BUILD_SCRIPTS = Shape("", write_busybox_app, [["docker/build-web.sh"]])
COMPOSE_BUILD_SHAPE = Shape("compose_build_", write_compose_build_app, [["docker", "compose", "build"]])
TWO_IMAGES_SHAPE = Shape(
    "two_images_",
    write_two_images,
    [["docker/build-0-base.sh"], ["docker/build-1-api.sh"], ["docker/build-1-web.sh"]],
    change_both_images,
    shows_both_images,
    edge=True,
)


class ByHand:
    """The same deploy run by hand: archive, the build steps, `docker compose up -d --wait`."""

    def __init__(self, repo: Path, project: str, port: int, root: Path, build: list[list[str]]) -> None:
        self.repo = repo
        self.build = build
        self.project = project
        self.port = port
        self.root = root
        self.number = 0

    def env(self, commit: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
        env.update(
            MIDDOCK_APP=self.project,
            MIDDOCK_RELEASE=str(self.number),
            MIDDOCK_COMMIT=commit,
            MIDDOCK_REF="refs/heads/main",
            IMAGE_TAG=commit[:12],
            COMPOSE_PROJECT_NAME=self.project,
            WEB_PORT=str(self.port),
        )
        return env

    def deploy(self, commit: str) -> tuple[float, dict[str, float]]:
        """The wall time of the three steps, and of each."""
        self.number += 1
        dest = self.root / f"release-{self.number}"
        env = self.env(commit)
        steps = {
            "archive": lambda: archive_extract(self.repo, commit, dest),
            "build": lambda: [run(step, cwd=dest, env=env) for step in self.build],
            "compose_up_wait": lambda: run(["docker", "compose", "up", "-d", "--wait"], cwd=dest, env=env),
        }
        os.sync()
        started = time.perf_counter()
        times = {}
        for name, step in steps.items():
            begun = time.perf_counter()
            step()
            times[name] = time.perf_counter() - begun
        return time.perf_counter() - started, times

    def cleanup(self) -> None:
        down = ["docker", "compose", "--project-name", self.project, "down", "--remove-orphans", "--timeout", "1"]
        subprocess.run(down, capture_output=True, cwd=self.root)


def remove_images(client: docker.DockerClient, prefixes: tuple[str, ...]) -> None:
    """Whatever is left of the images this run built or tagged (their names are unique to the run)."""
    for image in client.images.list():
        for tag in image.tags:
            if tag.startswith(prefixes):
                try:
                    client.images.remove(tag)
                except docker.errors.APIError:
                    pass


def bench_push(runs: int, shape: Shape) -> dict[str, float]:
    client = docker.from_env(version="auto")
    ensure_busybox_image(client)
    with tempfile.TemporaryDirectory(prefix="middock-bench-") as tmp:
        server = Server(Path(tmp) / "home")
        work = Workdir(Path(tmp) / "work")
        (Path(tmp) / "by-hand").mkdir()
        app = server.create_app("bench")
        hand = ByHand(work.path, f"{app}-hand", free_port(), Path(tmp) / "by-hand", shape.build)
        try:
            port = free_port()
            server.middock("config:set", app, f"WEB_PORT={port}", "--no-deploy")
            if shape.edge:
                server.start_edge()
            work.git("remote", "add", "production", str(server.repo_path(app)))
            shape.write(work, "${WEB_PORT}", "first\n")  # the port comes from each side's env
            hand.deploy(work.commit("first version"))
            timed_push(work)
            if shape.edge:
                port = server.app_port(app)
            ours, theirs = [], []
            stages: dict[str, list[float]] = defaultdict(list)
            hand_steps: dict[str, list[float]] = defaultdict(list)
            for n in range(runs):  # the app name in each page: no build can hit an earlier run's cache
                for side, deploy, times, steps_of, at in (
                    ("middock", lambda commit: timed_push(work), ours, stages, port),
                    ("by hand", hand.deploy, theirs, hand_steps, hand.port),
                ):
                    page = f"{side} {n} {app}\n"
                    shape.change(work, page)
                    commit = work.commit(f"{side} {n}")
                    elapsed, steps = deploy(commit)
                    times.append(elapsed)
                    for name, seconds in steps.items():
                        steps_of[name].append(seconds)
                    if not shape.shows(http_get(at), commit, page):
                        raise SystemExit(f"the {side} deploy did not put the new page live")
        finally:
            hand.cleanup()
            server.cleanup()
            remove_images(client, (f"{app}-", f"middock-release:{app}."))  # the by-hand project's too
    prefix = shape.prefix
    ours_s, theirs_s = statistics.median(ours), statistics.median(theirs)
    figures = {
        f"{prefix}push_to_live_middock_s": ours_s,
        f"{prefix}push_to_live_by_hand_s": theirs_s,
        f"{prefix}push_to_live_ratio": ours_s / theirs_s,
    }
    for name, values in stages.items():
        figures[f"{prefix}push_middock_{name}_s"] = statistics.median(values)
    for name, values in hand_steps.items():
        figures[f"{prefix}push_by_hand_{name}_s"] = statistics.median(values)
    return figures


def generate_repo(root: Path, rng: random.Random) -> None:
    """REPO_FILES text files of random hex (compressible, not trivially) in REPO_FOLDERS folders."""
    mean = REPO_BYTES // REPO_FILES
    for n in range(REPO_FILES):
        folder = root / f"pkg{n % REPO_FOLDERS:03d}" / f"sub{n % 3}"
        folder.mkdir(parents=True, exist_ok=True)
        size = rng.randint(mean // 4, mean * 7 // 4) * 64 // 65  # without the newlines
        text = rng.randbytes(size // 2).hex()
        lines = "\n".join(text[i : i + 64] for i in range(0, len(text), 64))
        (folder / f"module{n}.txt").write_text(lines + "\n")


def bench_checkout(runs: int) -> dict[str, float]:
    tmp = Path(tempfile.mkdtemp(prefix="middock-bench-checkout-", dir="/tmp"))
    try:
        work = Workdir(tmp / "work")
        generate_repo(work.path, random.Random(2))
        first = work.commit("generated tree")
        changed = work.path / "pkg007" / "sub1" / "module7.txt"
        changed.write_text(changed.read_text() + "one more line\n")
        second = work.commit("one-file change")
        bare = tmp / "repo.git"
        run(["git", "init", "-q", "--bare", str(bare)])
        work.git("push", "-q", str(bare), f"{first}:refs/heads/main")  # a pack, as a real first push
        work.git("push", "-q", str(bare), f"{second}:refs/heads/main")  # loose objects, as a small push
        folders = (tmp / f"out-{n}" for n in itertools.count())
        figures: dict[str, list[float]] = defaultdict(list)
        archives: dict[str, list[float]] = defaultdict(list)

        def ours(commit: str, previous: tuple[str, Path] | None) -> Path:
            dest = next(folders)

            def action() -> None:
                with Repo(str(bare)) as repo:  # opened per release, as each deploy does
                    checkout(repo.object_store, commit, dest, previous)

            figures[commit].append(timed(action))
            return dest

        def theirs(commit: str) -> None:
            dest = next(folders)
            archives[commit].append(timed(lambda: archive_extract(bare, commit, dest)))
            shutil.rmtree(dest)

        base = ours(first, None)
        for _ in range(runs):
            theirs(first)
            shutil.rmtree(ours(first, None))
            theirs(second)
            shutil.rmtree(ours(second, (first, base)))
        sizes = [p.stat().st_size for p in base.rglob("*") if p.is_file()]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result = {
        "checkout_repo_files": len(sizes),
        "checkout_repo_mb": sum(sizes) / 1e6,
        "checkout_first_s": statistics.median(figures[first]),
        "checkout_first_archive_s": statistics.median(archives[first]),
        "checkout_one_file_s": statistics.median(figures[second]),
        "checkout_one_file_archive_s": statistics.median(archives[second]),
    }
    result["checkout_first_ratio"] = result["checkout_first_s"] / result["checkout_first_archive_s"]
    result["checkout_one_file_ratio"] = result["checkout_one_file_s"] / result["checkout_one_file_archive_s"]
    return result


def show(figures: dict[str, float]) -> None:
    for name, value in figures.items():
        if isinstance(value, int):
            print(f"{name}: {value}", flush=True)
        else:
            print(f"{name}: {value:.2f}" if re.search(r"_(ratio|mb)$", name) else f"{name}: {value:.3f}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per measurement; the median is printed")
    parser.add_argument(
        "--only",
        choices=("push", "compose-build", "two-images", "checkout"),
        help="push: the three push-to-live pairs; compose-build, two-images: one pair alone; checkout: the checkout",
    )
    args = parser.parse_args()
    print(f"runs: {args.runs}", flush=True)
    if args.only in (None, "push"):
        show(bench_push(args.runs, BUILD_SCRIPTS))
    if args.only in (None, "push", "compose-build"):
        show(bench_push(args.runs, COMPOSE_BUILD_SHAPE))
    if args.only in (None, "push", "two-images"):
        show(bench_push(args.runs, TWO_IMAGES_SHAPE))
    if args.only in (None, "checkout"):
        show(bench_checkout(args.runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
