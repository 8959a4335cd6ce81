"""The dashboard's benchmarks, printed as `name: value` lines (seconds: 3 decimals, MiB: 1).

- apps page: `/` of a home with --apps apps (default 100). --real of them (default 3) are the
  tests' busybox app pushed for real; each of the others gets 3 release records written as a
  deploy writes them (`releases.allocate`, `finish`, `set_live`), so the page reads as many
  records as after real deploys while Docker runs only the real apps' containers. Time to first
  byte of GET / with the session's cookie, a new connection each: p50 and p95 of --requests
  requests one after another once the process runs. Target: p50 under 100 ms on this 2-core
  machine. Beside it, the first request after idle, median of --runs: as under systemd's socket
  activation, from starting `dashboard:serve` on a listening socket (fd 3) to the first byte of
  a GET / queued on that socket; and without systemd, as here, `middock dashboard` when no
  dashboard runs (it starts one and prints a link), then opening the link and GET / (first byte).
  Both with the machine's file cache warm.
- deploy log delay: a push of one of the real apps whose build script prints --lines lines, one
  every 25 ms, each carrying its time (`date +%s.%N`); the delay from that time to the line's
  arrival over the app page's event stream (`/apps/APP/events`, opened before the push, as an
  open page's is): p50, p95 and max. Target: p95 under 200 ms.
- memory: the resident memory (VmRSS) of the `dashboard:serve` process while it serves the apps
  page (the largest of a sample after each request, and its peak, VmHWM), and once it has
  exited after --idle seconds without a request (0: no process left). Beside it, the CPU the
  process uses while an apps page is open (its event stream, `/events`) and nothing changes, in
  percent of one core over CPU_SECONDS.

Everything runs in a throwaway MIDDOCK_HOME with unique app names and free loopback ports, and
its apps, containers, images, dashboard processes and files are removed afterwards.

    python3 bench/dashboard.py [--runs N] [--requests N] [--lines N] [--apps N] [--real N] [--idle S]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import docker

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from edge import push  # noqa: E402
from run import remove_images  # noqa: E402
from scale import median_p95  # noqa: E402
from support.apps import write_busybox_app  # noqa: E402
from support.images import ensure_busybox_image  # noqa: E402
from support.middock import Server, Workdir  # noqa: E402
from support.ports import free_port  # noqa: E402
from support.waiting import wait_for  # noqa: E402

from middock_receiver.cli.dashboard import answers  # noqa: E402
from middock_receiver.dashboard.web import COOKIE  # noqa: E402
from middock_receiver.state import releases  # noqa: E402
from middock_receiver.state.apps import App  # noqa: E402

LINK = re.compile(r"http://127\.0\.0\.1:\d+(/login/[A-Za-z0-9_-]+)")
CPU_SECONDS = 10  # how long the CPU of an open apps page is measured
RECORDS = 3  # release records of each app not pushed for real
LINE_GAP = "0.025"  # seconds between two lines of the build script
LINES_SCRIPT = """#!/bin/sh
sleep 1
i=1
while [ "$i" -le {lines} ]; do
  echo "bench-line $i $(date +%s.%N)"
  sleep {gap}
  i=$((i + 1))
done
"""


@dataclass
class Answer:
    first_byte: float  # time.perf_counter() when the answer's first byte arrived
    status: int
    head: str
    body: str


def request(port: int, path: str, cookie: str = "") -> bytes:
    """A GET in HTTP/1.0: the answer ends when the connection does (no chunks to take apart)."""
    lines = [f"GET {path} HTTP/1.0", f"Host: 127.0.0.1:{port}"] + ([f"Cookie: {COOKIE}={cookie}"] if cookie else [])
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def get(port: int, path: str, cookie: str = "") -> Answer:
    """GET `path` over a new connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as connection:
        connection.sendall(request(port, path, cookie))
        chunks = [connection.recv(65536)]
        first_byte = time.perf_counter()
        while chunks[-1]:
            chunks.append(connection.recv(65536))
    head, _, body = b"".join(chunks).decode(errors="replace").partition("\r\n\r\n")
    return Answer(first_byte, int(head.split(" ", 2)[1]), head, body)


@contextlib.contextmanager
def event_stream(port: int, path: str, cookie: str) -> Iterator[tuple[socket.socket, BinaryIO]]:
    """An open event stream, its headers read: the socket, and a reader of its lines."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as stream:
        stream.sendall(request(port, path, cookie))
        reader = stream.makefile("rb")
        status = reader.readline().decode()
        if " 200 " not in status:
            raise SystemExit(f"{path} answered {status.strip()}")
        while reader.readline().strip():  # the headers
            continue
        stream.settimeout(None)
        yield stream, reader


def cpu_seconds(pid: int) -> float:
    """User and system CPU time the process has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed_get(port: int, path: str, cookie: str) -> float:
    """Seconds from connecting to the first byte of a 200 answer."""
    started = time.perf_counter()
    answer = get(port, path, cookie)
    if answer.status != 200:
        raise SystemExit(f"GET {path} answered {answer.status}")
    return answer.first_byte - started


def link(server: Server) -> str:
    """The path of a one-time link from `middock dashboard` (which starts the dashboard if it
    does not answer)."""
    found = LINK.search(server.middock("dashboard").stdout)
    if not found:
        raise SystemExit("`middock dashboard` printed no link")
    return found[1]


def log_in(port: int, path: str) -> str:
    """The session cookie that opening a link sets."""
    answer = get(port, path)
    cookie = re.search(rf"(?im)^set-cookie: {COOKIE}=([^;\r\n]+)", answer.head)
    if answer.status != 200 or not cookie:
        raise SystemExit(f"the link answered {answer.status} without a session cookie")
    return cookie[1]


def resident_mib(pid: int | None) -> tuple[float, float]:
    """(VmRSS, VmHWM) of the process in MiB; (0, 0) once it is gone."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines() if pid else []
    except FileNotFoundError:
        lines = []
    fields = {line.split(":")[0]: int(line.split()[1]) / 1024 for line in lines if line.startswith("Vm")}
    return fields.get("VmRSS", 0.0), fields.get("VmHWM", 0.0)


class Served:
    """`dashboard:serve` as systemd starts it: on a listening socket it is handed as fd 3
    (LISTEN_PID, LISTEN_FDS), so a connection made at once waits in the socket's queue. This
    socket closes with the process (systemd would keep it)."""

    def __init__(self, server: Server, port: int, idle: float, log: Path) -> None:
        listener = socket.create_server(("127.0.0.1", port), backlog=128)
        fd = listener.fileno()
        moved = f" {fd}<&-" if fd != 3 else ""  # the listener as fd 3 only
        shell = f'export LISTEN_PID=$$ LISTEN_FDS=1; exec "$@" 3<&{fd}{moved}'
        argv = [sys.executable, "-m", "middock_receiver", "dashboard:serve", "--idle", str(idle)]
        self.started = time.perf_counter()
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                ["sh", "-c", shell, "sh", *argv], env=server.env, pass_fds=(fd,), stdout=out, stderr=out
            )
        listener.close()

    def wait_exit(self, timeout: float) -> float:
        """Wait until it exits by itself; perf_counter() then."""
        self.process.wait(timeout=timeout)
        if self.process.returncode != 0:
            raise SystemExit(f"dashboard:serve exited {self.process.returncode}")
        return time.perf_counter()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


def dashboards(home: Path) -> list[int]:
    """The pids of the `dashboard:serve` processes of this home (whoever started them)."""
    found = []
    for folder in Path("/proc").glob("[0-9]*"):
        try:
            command = (folder / "cmdline").read_bytes().split(b"\0")
            environ = (folder / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"dashboard:serve" in command and f"MIDDOCK_HOME={home}".encode() in environ:
            found.append(int(folder.name))
    return found


def end_dashboards(home: Path) -> None:
    for pid in dashboards(home):
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
    wait_for(lambda: not dashboards(home), timeout=15, what="the dashboard to exit")


def write_records(home: Path, name: str) -> None:
    """RECORDS releases of `name`, the last one live, as deploys record them."""
    app = App(name, home)
    now = time.time()
    for number in range(1, RECORDS + 1):
        release = releases.allocate(
            app,
            releases.Release(
                0,
                secrets.token_hex(20),
                "refs/heads/main",
                subject=f"change {number} of {name}",
                author="Bench Author <bench@example.com>",
                pusher="bench",
                started=now - (RECORDS - number + 1) * 3600,
                stage=releases.RETIRED,
            ),
        )
        releases.finish(app, release, releases.SUCCEEDED)
    releases.set_live(app, RECORDS)


class Home:
    """The benchmark's MIDDOCK_HOME: its apps, pushed or given records, and the dashboards started in it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.server = Server(root / "home")
        self.port = free_port()
        self.server.middock("edge:set", f"dashboard-port={self.port}")
        self.log = root / "dashboard.log"
        self.recorded: list[str] = []
        self.works: dict[str, Workdir] = {}
        self.serving: list[Served] = []

    def populate(self, count: int, real: int) -> None:
        """`count` apps: `real` of them pushed, the others given release records."""
        tag = uuid.uuid4().hex[:6]
        for n in range(real):
            app = self.server.create_app(f"dash{tag}-real{n}")
            work = Workdir(self.root / "work" / app)
            work.git("remote", "add", "production", str(self.server.repo_path(app)))
            web_port = free_port()
            push(work, "v1", lambda page, work=work, web_port=web_port: write_busybox_app(work, web_port, page))
            self.works[app] = work
        for n in range(count - real):
            name = f"dash{tag}-{n:03d}"
            self.server.middock("apps:create", name)
            self.recorded.append(name)
            write_records(self.server.home, name)

    def serve(self, idle: float) -> Served:
        served = Served(self.server, self.port, idle, self.log)
        self.serving.append(served)
        return served

    def cleanup(self) -> None:
        for served in self.serving:
            served.stop()
        end_dashboards(self.server.home)
        for name in self.recorded:
            self.server.middock("apps:destroy", name, "--force", check=False)
        self.server.cleanup()
        prefixes = tuple(p for app in self.server.apps for p in (f"{app}-web:", f"middock-release:{app}."))
        remove_images(docker.from_env(version="auto"), prefixes)


def apps_page(home: Home, apps: int, requests: int, idle: float) -> str:
    """The apps page once the process runs, the memory while it serves and after it exits idle;
    returns the session's cookie."""
    served = home.serve(idle)
    cookie = log_in(home.port, link(home.server))
    page = get(home.port, "/", cookie).body  # the process's first page: not counted
    if page.count("data-app=") != apps:
        raise SystemExit(f"the apps page shows {page.count('data-app=')} apps of {apps}")
    times, rss = [], []
    for _ in range(requests):
        times.append(timed_get(home.port, "/", cookie))
        rss.append(resident_mib(served.process.pid)[0])
    peak = resident_mib(served.process.pid)[1]
    with event_stream(home.port, "/events", cookie):  # an open apps page, nothing changing
        time.sleep(1)
        used, started = cpu_seconds(served.process.pid), time.perf_counter()
        time.sleep(CPU_SECONDS)
        share = (cpu_seconds(served.process.pid) - used) / (time.perf_counter() - started)
    last = time.perf_counter()
    exited = served.wait_exit(idle + 30)
    p50, p95 = median_p95(times)
    print(f"apps_page_apps: {apps}")
    print(f"apps_page_kib: {len(page.encode()) / 1024:.1f}")
    print(f"apps_page_ttfb_p50_s: {p50:.3f}")
    print(f"apps_page_ttfb_p95_s: {p95:.3f}")
    print(f"apps_page_requests: {len(times)}")
    print(f"dashboard_rss_serving_mib: {max(rss):.1f}")
    print(f"dashboard_rss_peak_mib: {peak:.1f}")
    print(f"dashboard_cpu_apps_page_open_percent: {share * 100:.1f}")
    print(f"dashboard_idle_exit_after_s: {exited - last:.3f}")
    print(f"dashboard_rss_after_idle_mib: {resident_mib(served.process.pid)[0]:.1f}")
    print(f"dashboard_processes_after_idle: {len(dashboards(home.server.home)) + answers(home.port)}")
    return cookie


def first_after_idle(home: Home, cookie: str, runs: int, idle: float) -> None:
    """The first GET / of a process started for it: socket activated, and by `middock dashboard`."""
    activated = []
    for _ in range(runs):
        served = home.serve(idle)
        answer = get(home.port, "/", cookie)
        if answer.status != 200:
            raise SystemExit(f"GET / answered {answer.status}")
        activated.append(answer.first_byte - served.started)
        served.wait_exit(idle + 30)
    commands, first_pages = [], []
    for _ in range(runs):
        if dashboards(home.server.home) or answers(home.port):
            raise SystemExit("a dashboard still runs")
        started = time.perf_counter()
        path = link(home.server)
        commands.append(time.perf_counter() - started)
        answer = get(home.port, "/", log_in(home.port, path))
        if answer.status != 200:
            raise SystemExit(f"GET / answered {answer.status}")
        first_pages.append(answer.first_byte - started)
        end_dashboards(home.server.home)  # it would wait 300 s idle
    print(f"apps_page_first_after_idle_socket_s: {statistics.median(activated):.3f}")
    print(f"apps_page_first_after_idle_command_s: {statistics.median(first_pages):.3f}")
    print(f"dashboard_command_starting_it_s: {statistics.median(commands):.3f}")


def log_delay(home: Home, cookie: str, lines: int, idle: float) -> None:
    """A push whose build script prints timestamped lines, followed over the app's event stream."""
    app, work = next(iter(home.works.items()))
    work.write("docker/build-0-lines.sh", LINES_SCRIPT.format(lines=lines, gap=LINE_GAP), executable=True)
    served = home.serve(idle)
    delays: list[float] = []
    with event_stream(home.port, f"/apps/{app}/events", cookie) as (stream, reader):

        def follow() -> None:
            for raw in reader:
                arrived = time.time()
                line = raw.decode(errors="replace").strip()
                if line.startswith("data:"):
                    words = str(json.loads(line[5:]).get("text", "")).split()
                    if words[:1] == ["bench-line"]:
                        delays.append(arrived - float(words[2]))

        follower = threading.Thread(target=follow, daemon=True)
        follower.start()
        push(work, "lines", lambda version: work.write("page.html", version))
        wait_for(lambda: len(delays) >= lines, timeout=30, raises=False)
        stream.shutdown(socket.SHUT_RDWR)
        follower.join(timeout=10)
    served.wait_exit(idle + 30)
    if not delays:
        raise SystemExit("no line of the deploy came over the event stream")
    p50, p95 = median_p95(delays)
    print(f"deploy_log_lines: {len(delays)} of {lines}")
    print(f"deploy_log_delay_p50_s: {p50:.3f}")
    print(f"deploy_log_delay_p95_s: {p95:.3f}")
    print(f"deploy_log_delay_max_s: {max(delays):.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="starts after idle; the median is printed")
    parser.add_argument("--requests", type=int, default=50, help="GETs of the apps page once it runs")
    parser.add_argument("--lines", type=int, default=200, help="lines of the deploy whose delay is measured")
    parser.add_argument("--apps", type=int, default=100)
    parser.add_argument("--real", type=int, default=3, help="of the apps, those pushed for real")
    parser.add_argument("--idle", type=float, default=2.0, help="the dashboard's --idle here")
    args = parser.parse_args()
    ensure_busybox_image(docker.from_env(version="auto"))
    sys.stdout.reconfigure(line_buffering=True)
    root = Path(tempfile.mkdtemp(prefix="middock-bench-dashboard-"))
    home = None
    try:
        started = time.perf_counter()
        home = Home(root)
        home.populate(args.apps, max(1, args.real))
        print(f"setup_s: {time.perf_counter() - started:.1f}")
        cookie = apps_page(home, args.apps, args.requests, args.idle)
        first_after_idle(home, cookie, args.runs, args.idle)
        log_delay(home, cookie, args.lines, args.idle)
    finally:
        if home is not None:
            home.cleanup()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
