"""The edge's benchmarks, printed as `name: value` lines.

- failed requests: 5 deploys and 2 rollbacks of the tests' web app behind the edge, under the
  load of the edge tests (3 keep-alive clients, 3 clients opening a connection per request, 2
  clients of 3-second requests in flight at every switch). Target: 0.
- latency the edge adds: sequential GETs through the app's port on the edge (HAProxy) against
  the same GETs straight to the web container's loopback port, each on a new connection, and
  through the edge on a kept-alive one; p50 and p99 in ms, the added ms and the ratios.
  Target: added p50 at most 1 ms.
- push-to-live: `git push` of a one-line change until the release is live, blue/green behind the
  edge against in place (the same app without MIDDOCK_WEB), median of --runs. Target: ratio at
  most 1.25.
- latency the domain path adds: sequential GETs of an app's domain through Caddy, then HAProxy,
  on one kept-alive connection, over HTTP (`tls=off`) and over HTTPS (`tls=internal`: Caddy's
  local CA, so no ACME server is needed), each against the same GETs straight to the web
  container (interleaved; the container's httpd closes every connection, so those are on new
  connections); p50 and p99 in ms, the added ms and the ratios. Target: added p50 at most 1 ms
  over HTTP; HTTPS is reported.

Everything runs in a throwaway MIDDOCK_HOME with unique app names and free ports, and its
containers, images, edge and files are removed afterwards.

    python3 bench/edge.py [--runs N] [--requests N] [--only failed|latency|push|domain]
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import shutil
import ssl
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import docker

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from support.apps import write_busybox_app, write_web_app  # noqa: E402
from support.images import ensure_busybox_image  # noqa: E402
from support.load import Load, connection  # noqa: E402
from support.middock import Server, Workdir  # noqa: E402
from support.ports import free_port  # noqa: E402
from support.web import http_get  # noqa: E402

DOMAIN = "bench.example.test"


def push(work: Workdir, version: str, write) -> float:  # noqa: ANN001
    write(version)
    work.commit(version)
    started = time.perf_counter()
    result = work.push()
    elapsed = time.perf_counter() - started
    if "is live" not in result.stderr:
        raise SystemExit(f"push of {version} failed:\n{result.stderr}")
    return elapsed


def get(port: int, conn: http.client.HTTPConnection | None = None, host: str | None = None) -> float:
    """One GET (of `host`, when given); its time in ms (a new connection unless `conn`)."""
    started = time.perf_counter()
    own = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    own.request("GET", "/", headers={"Host": host} if host else {})
    response = own.getresponse()
    response.read()
    if response.status != 200:
        raise SystemExit(f"GET / on {port} answered {response.status}")
    if conn is None:
        own.close()
    return (time.perf_counter() - started) * 1000


def percentiles(samples: list[float]) -> tuple[float, float]:
    cuts = statistics.quantiles(samples, n=100)
    return cuts[49], cuts[98]


def failed_requests(server: Server, root: Path) -> None:
    app = server.create_app("bench-edge")
    work = Workdir(root / "failed")
    work.git("remote", "add", "production", str(server.repo_path(app)))
    push(work, "v0", lambda v: write_web_app(work, v))
    port = server.app_port(app)
    with Load(port, max_seconds=900, pace=0) as load:
        time.sleep(1)
        for number in range(1, 6):
            push(work, f"v{number}", lambda v: write_web_app(work, v))
        for _ in range(2):
            server.middock("rollback", app)
        time.sleep(1)
    report = load.report
    print(f"edge_deploys_and_rollbacks: 7 (5 deploys, 2 rollbacks) in one load run of {report.total} requests")
    print(f"edge_failed_requests: {len(report.failures)}")
    print(f"edge_slow_requests_answered: {sum(a.slow for a in report.answers)}")
    if report.failures:
        print(f"edge_first_failures: {report.failures[:3]}")


def latency(server: Server, root: Path, requests: int) -> None:
    app = server.create_app("bench-lat")
    work = Workdir(root / "latency")
    work.git("remote", "add", "production", str(server.repo_path(app)))
    push(work, "v1", lambda v: write_web_app(work, v))
    edge_port = server.app_port(app)
    direct_port = container_port(server, app)
    for port in (edge_port, direct_port):
        for _ in range(200):  # warm up
            get(port)
    direct, edge = [], []
    for _ in range(requests):  # interleaved, so both see the same machine
        direct.append(get(direct_port))
        edge.append(get(edge_port))
    kept = http.client.HTTPConnection("127.0.0.1", edge_port, timeout=10)
    edge_kept = [get(edge_port, kept) for _ in range(requests)]
    kept.close()
    (d50, d99), (e50, e99), (k50, k99) = percentiles(direct), percentiles(edge), percentiles(edge_kept)
    print(f"latency_direct_p50_ms: {d50:.3f}")
    print(f"latency_direct_p99_ms: {d99:.3f}")
    print(f"latency_edge_p50_ms: {e50:.3f}")
    print(f"latency_edge_p99_ms: {e99:.3f}")
    print(f"latency_edge_added_p50_ms: {e50 - d50:.3f}")
    print(f"latency_edge_added_p99_ms: {e99 - d99:.3f}")
    print(f"latency_edge_p50_ratio: {e50 / d50:.2f}")
    print(f"latency_edge_p99_ratio: {e99 / d99:.2f}")
    print(f"latency_edge_keepalive_p50_ms: {k50:.3f}")
    print(f"latency_edge_keepalive_p99_ms: {k99:.3f}")


def container_port(server: Server, app: str) -> int:
    """The loopback port of the live release's web container."""
    project = json.loads(server.middock("status", app, "--json").stdout)["live"]["project"]
    labels = [f"com.docker.compose.project={project}", "com.docker.compose.service=web"]
    (container,) = docker.from_env(version="auto").containers.list(filters={"label": labels})
    return int(container.ports["8080/tcp"][0]["HostPort"])


def kept_alive(port: int, tls: ssl.SSLContext | None, timeout: float = 30) -> http.client.HTTPConnection:
    """A connection to the domain through the edge that has answered once (its certificate may
    be on its way when TLS was just turned on)."""
    deadline = time.monotonic() + timeout
    while True:
        conn = connection("127.0.0.1", port, 10, tls, DOMAIN)
        try:
            get(port, conn, DOMAIN)
            return conn
        except (OSError, http.client.HTTPException, SystemExit):
            conn.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def domain_latency(server: Server, root: Path, requests: int) -> None:
    app = server.create_app("bench-dom")
    work = Workdir(root / "domain")
    work.git("remote", "add", "production", str(server.repo_path(app)))
    settings = json.loads(server.middock("edge", "--json").stdout)["settings"]
    server.middock("edge:set", "tls=off")  # before the domain is served: no ACME server here
    server.middock("domains:add", app, DOMAIN)
    push(work, "v1", lambda v: write_web_app(work, v))
    direct_port = container_port(server, app)
    for proto in ("http", "https"):
        tls = None
        if proto == "https":
            server.middock("edge:set", "tls=internal")
            local_ca = server.home / ".middock" / "_edge" / "caddy" / "pki" / "authorities" / "local" / "root.crt"
            deadline = time.monotonic() + 30
            while not local_ca.exists() and time.monotonic() < deadline:
                time.sleep(0.2)
            tls = ssl.create_default_context(cafile=str(local_ca))
        port = settings[f"{proto}-port"]
        kept = kept_alive(port, tls)
        for _ in range(200):  # warm up
            get(direct_port)
            get(port, kept, DOMAIN)
        direct, domain = [], []
        for _ in range(requests):  # interleaved, so both see the same machine
            direct.append(get(direct_port))
            domain.append(get(port, kept, DOMAIN))
        kept.close()
        (d50, d99), (p50, p99) = percentiles(direct), percentiles(domain)
        print(f"latency_domain_{proto}_direct_p50_ms: {d50:.3f}")
        print(f"latency_domain_{proto}_direct_p99_ms: {d99:.3f}")
        print(f"latency_domain_{proto}_p50_ms: {p50:.3f}")
        print(f"latency_domain_{proto}_p99_ms: {p99:.3f}")
        print(f"latency_domain_{proto}_added_p50_ms: {p50 - d50:.3f}")
        print(f"latency_domain_{proto}_added_p99_ms: {p99 - d99:.3f}")
        print(f"latency_domain_{proto}_p50_ratio: {p50 / d50:.2f}")
        print(f"latency_domain_{proto}_p99_ratio: {p99 / d99:.2f}")


def push_to_live(server: Server, root: Path, runs: int) -> None:
    behind = server.create_app("bench-bg")
    in_place = server.create_app("bench-ip")
    edge_work, plain_work = Workdir(root / "bg"), Workdir(root / "ip")
    edge_work.git("remote", "add", "production", str(server.repo_path(behind)))
    plain_work.git("remote", "add", "production", str(server.repo_path(in_place)))
    plain_port = free_port()
    push(edge_work, "v0", lambda v: write_web_app(edge_work, v))
    push(plain_work, "v0", lambda v: write_busybox_app(plain_work, plain_port, v))
    edge_times, plain_times = [], []
    for number in range(1, runs + 1):  # interleaved, so both see the same machine
        edge_times.append(push(edge_work, f"v{number}", lambda v: write_web_app(edge_work, v)))
        plain_times.append(push(plain_work, f"v{number}", lambda v: write_busybox_app(plain_work, plain_port, v)))
    assert http_get(server.app_port(behind)) == f"v{runs}\n" and http_get(plain_port) == f"v{runs}"
    bg, ip = statistics.median(edge_times), statistics.median(plain_times)
    print(f"push_to_live_bluegreen_s: {bg:.3f}")
    print(f"push_to_live_in_place_s: {ip:.3f}")
    print(f"push_to_live_bluegreen_ratio: {bg / ip:.2f}")


@contextlib.contextmanager
def server_with_edge(prefix: str) -> Iterator[tuple[Server, Path]]:
    """A throwaway MIDDOCK_HOME under a new temporary folder, with its own edge on free ports; its
    containers, images, edge and files are removed afterwards."""
    ensure_busybox_image(docker.from_env(version="auto"))
    root = Path(tempfile.mkdtemp(prefix=prefix))
    server = Server(root / "home")
    try:
        server.start_edge()
        yield server, root
    finally:
        server.cleanup()
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--only", choices=["failed", "latency", "push", "domain"])
    args = parser.parse_args()
    with server_with_edge("mb") as (server, root):
        if args.only in (None, "failed"):
            failed_requests(server, root)
        if args.only in (None, "latency"):
            latency(server, root, args.requests)
        if args.only in (None, "push"):
            push_to_live(server, root, args.runs)
        if args.only in (None, "domain"):  # last: it changes the edge's TLS setting
            domain_latency(server, root, args.requests)


if __name__ == "__main__":
    main()
