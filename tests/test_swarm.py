"""The same push across a Docker Swarm: a real 3-node Swarm on this machine (network namespaces,
one dockerd per node: swarm_bed.py), middock's own registry, the real edge, real git pushes.

The bed starts only the engines: the Swarm and the trust in the registry come from what an admin
runs as root, middock's `swarm:init` on the manager and the script `nodes:join-script` prints on
every other node, each in its node's own mount namespace (its own /etc/docker).
Node addresses are reachable only inside the bed's namespaces, so middock (as the manager runs
it), git pushes and the load all run inside node 1's namespace; the machine's own Docker Engine
and its /etc/docker are not touched.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support.apps import write_web_app
from support.middock import ROOT
from support.swarm import COMPOSE, Load, SwarmServer, SwarmWork, start_middock
from support.swarm_bed import SwarmBed, missing_requirements, reap_stale_beds

pytestmark = [pytest.mark.bed, pytest.mark.xdist_group("swarm-bed")]


def assert_every_node_trusts(bed: SwarmBed, registry: str, ca: Path, reference: str, manager_config: Path) -> None:
    """Each engine has the registry's CA in its own certs.d (from swarm:init on the manager, from the
    join script elsewhere) and pulls a pushed digest through it (a pull asks the registry even when
    the image is there), with the credentials each has: middock's on the manager, root's `docker
    login` from the join script on the others (none needed for a registry of the admin's)."""
    for node in bed.nodes:
        installed = node.etc_dir / "certs.d" / registry / "ca.crt"
        assert installed.is_file() and installed.read_bytes() == ca.read_bytes(), f"{node.name}: no CA at {installed}"
        config = manager_config if node is bed.manager else node.docker_config
        pulled = bed.docker("--config", str(config), "pull", reference, node=node, check=False)
        assert pulled.returncode == 0, f"{node.name}: {pulled.stderr}"


def bare_engines(nodes: int = 3, *, registry: bool = False) -> SwarmBed:
    """A bed of engines without a Swarm (start_middock makes it, as an admin would), with the busybox
    image on the manager and a 1 s heartbeat. The Swarm tests fail, not skip, where a bed cannot run."""
    missing = missing_requirements(registry=True)
    if missing:
        pytest.fail(f"the Swarm tests need {', '.join(missing)} (scripts/test-setup.sh installs them)")
    reap_stale_beds()
    return SwarmBed(nodes, registry=registry, swarm=False, dispatcher_heartbeat=1)


def first_push(server: SwarmServer, folder: Path, prefix: str) -> subprocess.CompletedProcess:
    """A new app on the Swarm, its work tree in folder, and its first push (v1); sets server.app,
    server.work and server.port."""
    server.app = server.create_app(prefix)
    server.middock("apps:set", server.app, "target", "swarm")
    server.work = SwarmWork(folder / "work", server)
    server.work.git("remote", "add", "production", str(server.repo_path(server.app)))
    write_web_app(server.work, "v1", COMPOSE)
    server.work.write("middock.cron", "tasked @daily worker sh -c 'echo from a scheduled task; exit 5'\n")
    server.work.commit("v1")
    pushed = server.work.push()
    server.port = server.app_port(server.app)
    return pushed


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, docker_client):
    """A 3-node Swarm, middock's registry on the manager, its edge, and one app on the Swarm."""
    base = tmp_path_factory.mktemp("swarm")
    with bare_engines() as bed:
        bed.load_image("middock-test/busybox")
        server = SwarmServer(base / "home", bed)
        try:
            start_middock(server)
            server.first_push = first_push(server, base, "sw")
            server.middock("apps:set", server.app, "keep", "2")
            server.base = base
            yield server
        finally:
            server.cleanup()


def push(server: SwarmServer, version: str, compose: str = COMPOSE) -> str:
    write_web_app(server.work, version, compose)
    server.work.write("www/built.txt", version)  # a new image each time, to be pruned from the registry
    server.work.commit(version)
    result = server.work.push()
    assert "is live at" in result.stderr, result.stderr
    return result.stderr


def running(server: SwarmServer, service: str) -> list[dict]:
    stack = json.loads(server.middock("status", server.app, "--json").stdout)["live"]["project"]
    return server.bed.running_tasks(f"{stack}_{service}")


def test_a_push_spreads_the_web_tasks_over_every_node_and_serves_through_the_edge(cluster):
    out = cluster.first_push.stderr
    assert "Pushing 2 images to the registry" in out and "docker stack deploy" in out, out
    assert "Release 1" in out and "is live at http://" in out
    assert f"Made the Swarm managed by this server ({cluster.bed.manager.address})" in cluster.init, cluster.init
    assert "docker swarm join --token" in cluster.script
    tasks = running(cluster, "web")
    assert sorted(task["NodeName"] for task in tasks) == sorted(node.name for node in cluster.bed.nodes)
    pinned = json.loads(cluster.middock("releases", cluster.app, "--json").stdout)[0]["pushed"]["web"]
    assert re.fullmatch(
        rf"{re.escape(cluster.bed.manager.address)}:5000/{cluster.app}/web@sha256:[0-9a-f]{{64}}", pinned
    )
    for node in cluster.bed.nodes:  # each node pulled exactly the pinned digest
        digests = {d for image in cluster.bed.client(node).images.list() for d in image.attrs.get("RepoDigests", [])}
        assert pinned in digests, (node.name, digests)
    ca = cluster.home / ".middock" / "_swarm" / "registry" / "ca.crt"
    config = cluster.home / ".middock" / "_swarm" / "docker"
    assert_every_node_trusts(cluster.bed, f"{cluster.bed.manager.address}:5000", ca, pinned, config)
    assert cluster.get() == "v1\n"
    assert len({cluster.get("/host.html") for _ in range(12)}) == 3  # the edge balances over every task

    ps = json.loads(cluster.middock("ps", cluster.app, "--json").stdout)
    assert {row["node"] for row in ps if row["service"] == "web"} == {node.name for node in cluster.bed.nodes}
    logs = cluster.middock("logs", cluster.app, "-n", "5", "--service", "worker").stdout
    names = "|".join(re.escape(node.name) for node in cluster.bed.nodes)
    assert re.search(rf"Z worker\.1@({names}): .*working on", logs), logs  # each line says its task's node
    ran = cluster.middock("run", cluster.app, "worker", "sh", "-c", "echo from a task; exit 7", check=False)
    assert ran.returncode == 7 and "from a task" in ran.stdout, ran
    job = cluster.middock("cron:run", cluster.app, "tasked", check=False)  # a scheduled job: a one-off task too
    assert job.returncode == 5 and job.stdout == "from a scheduled task\n", job
    assert json.loads(cluster.middock("cron:runs", cluster.app, "--json").stdout)[-1]["exit_code"] == 5
    nodes = json.loads(cluster.middock("nodes", "--json").stdout)
    assert [row["role"] for row in nodes].count("manager") == 1 and all(row["state"] == "ready" for row in nodes)


def test_a_second_push_under_load_drops_nothing_and_a_rollback_neither_builds_nor_pushes(cluster):
    load = Load(cluster, cluster.base)
    out = push(cluster, "v2")
    report = load.stop()
    assert report["failures"] == [] and {"v1", "v2"} <= set(report["versions"]), report
    assert cluster.get() == "v2\n"
    assert "Pushing 1 image to the registry" in out and "worker: unchanged since release 1, pushed then" in out, out
    first, second = (release["pushed"] for release in cluster.releases(cluster.app)[:2])
    assert second["worker"] == first["worker"] and second["web"] != first["web"]

    load = Load(cluster, cluster.base)
    rollback = cluster.middock("rollback", cluster.app)
    report = load.stop()
    assert report["failures"] == [], report
    assert "Running docker/build" not in rollback.stdout and "Pushing" not in rollback.stdout, rollback.stdout
    assert cluster.get() == "v1\n"


REGISTRY_REQUEST = """
import base64, http.client, json, ssl, sys
address, ca, method, path, auth = sys.argv[1:6]
host, _, port = address.rpartition(":")
conn = http.client.HTTPSConnection(host, int(port), context=ssl.create_default_context(cafile=ca), timeout=10)
headers = {"Authorization": "Basic " + base64.b64encode(auth.encode()).decode()} if auth else {}
headers["Accept"] = "application/vnd.docker.distribution.manifest.v2+json"
conn.request(method, path, headers=headers)
print(conn.getresponse().status)
"""


def registry_status(server: SwarmServer, node: int, method: str, path: str, auth: str = "") -> int:
    """What middock's registry answers a request from a node's namespace (`auth`: USER:PASSWORD)."""
    folder = server.home / ".middock" / "_swarm" / "registry"
    argv = [sys.executable, "-c", REGISTRY_REQUEST, f"{server.bed.manager.address}:5000", str(folder / "ca.crt")]
    result = server.bed.run_in(node, [*argv, method, path, auth], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return int(result.stdout)


def test_the_registry_wants_a_password_and_the_nodes_may_only_read(cluster):
    """Anyone reaching the registry gets 401 to a pull and a delete; the nodes' password (the join
    script's) reads, but deletes nothing: only middock's own, on the manager's loopback, may."""
    pinned = cluster.releases(cluster.app)[0]["pushed"]["web"]
    repo, digest = pinned.split("/", 1)[1].split("@")
    manifest = f"/v2/{repo}/manifests/{digest}"
    password = (cluster.home / ".middock" / "_swarm" / "registry" / "pull.password").read_text().strip()
    assert registry_status(cluster, 2, "GET", "/v2/") == 401
    assert registry_status(cluster, 2, "GET", manifest) == 401
    assert registry_status(cluster, 2, "DELETE", manifest) == 401
    assert registry_status(cluster, 2, "GET", manifest, f"pull:{password}") == 200
    assert registry_status(cluster, 2, "DELETE", manifest, f"pull:{password}") in (405, 503)
    assert registry_has(cluster, pinned)
    assert "pull" in cluster.script and "docker login --username pull" in cluster.script


def test_a_task_port_answers_the_manager_only(cluster):
    """Each web task publishes a port on its node; the join script (and swarm:init, on the manager)
    let no host but the manager open a connection to it."""
    tasks = running(cluster, "web")
    elsewhere = next(task for task in tasks if task["NodeName"] != cluster.bed.manager.name)
    node = cluster.bed.node(elsewhere["NodeName"])
    url = f"http://{node.address}:{elsewhere['Ports'][8080]}/"
    assert cluster.bed.http_get(url) == "v1\n"  # from the manager (the bed's namespace 1)
    other = next(n for n in cluster.bed.nodes if n is not cluster.bed.manager and n is not node)
    probe = "import socket, sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3)"
    tried = cluster.bed.run_in(
        other, [sys.executable, "-c", probe, node.address, str(elsewhere["Ports"][8080])], capture_output=True
    )
    assert tried.returncode != 0, "a node that is not the manager reached a task's port"


def stacks(server: SwarmServer) -> set[str]:
    names = server.bed.docker("stack", "ls", "--format", "{{.Name}}").stdout.split()
    return {name for name in names if name.startswith(f"{server.app}_r")}


def test_a_release_whose_health_never_passes_is_removed_and_the_old_one_serves(cluster):
    cluster.wait_idle(cluster.app)  # what the last deploy replaced is gone
    before = stacks(cluster)
    load = Load(cluster, cluster.base)
    failed = cluster.middock(
        "config:set", cluster.app, "MIDDOCK_HEALTH_PATH=/missing", "MIDDOCK_HEALTH_TIMEOUT=8", check=False
    )
    report = load.stop()
    assert failed.returncode == 1 and "health check failed" in failed.stderr, failed.stdout
    assert report["failures"] == [], report
    assert stacks(cluster) == before and cluster.get() == "v1\n"
    cluster.middock("config:unset", cluster.app, "MIDDOCK_HEALTH_PATH", "MIDDOCK_HEALTH_TIMEOUT", "--no-deploy")


def test_a_deploy_killed_at_its_gate_is_settled_and_a_new_scale_runs_on_the_swarm(cluster):
    live = json.loads(cluster.middock("status", cluster.app, "--json").stdout)["live"]
    argv = ["ip", "netns", "exec", cluster.bed.manager.name, sys.executable, "-m", "middock_receiver"]
    slow_gate = ["config:set", cluster.app, "MIDDOCK_HEALTH_PATH=/cgi-bin/slow"]  # 3 s a task: a gate to kill
    number = cluster.releases(cluster.app)[-1]["number"] + 1
    deploying = subprocess.Popen([*argv, *slow_gate], env=cluster.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    record_path = cluster.home / ".middock" / cluster.app / "releases" / str(number) / "release.json"
    deadline = time.monotonic() + 120
    record = {}
    while record.get("stage") != "health" and time.monotonic() < deadline:
        time.sleep(0.1)
        record = json.loads(record_path.read_text()) if record_path.exists() else {}
    os.kill(record["pid"], signal.SIGKILL)
    deploying.communicate(timeout=60)
    settled = cluster.middock("status", cluster.app)
    assert "interrupted during health" in settled.stderr, settled.stderr
    assert stacks(cluster) == {live["project"]} and cluster.get() == "v1\n"
    cluster.middock("config:unset", cluster.app, "MIDDOCK_HEALTH_PATH", "--no-deploy")

    scaled = cluster.middock("ps:scale", cluster.app, "worker=2")
    assert "Pushing" not in scaled.stdout and "is live" in scaled.stdout, scaled.stdout
    assert len(running(cluster, "worker")) == 2 and len(running(cluster, "web")) == 3


def test_a_dead_node_stops_getting_requests_within_seconds_and_its_tasks_move(cluster):
    node = cluster.bed.nodes[2]
    load = Load(cluster, cluster.base)
    time.sleep(1)
    killed = time.monotonic()
    cluster.bed.stop_node(node, kill=True)
    time.sleep(14)
    report = load.stop()
    late = [f for f in report["failures"] if float(f.split("sent at ")[1].split(",")[0]) > killed + 10]
    assert late == [], report["failures"][:5]
    deadline = time.monotonic() + 60
    while len(running(cluster, "web")) < 3 and time.monotonic() < deadline:
        time.sleep(1)
    tasks = running(cluster, "web")
    assert len(tasks) == 3 and node.name not in {task["NodeName"] for task in tasks}
    cluster.bed.start_node(node)


def test_nodes_drain_and_activate_and_a_live_node_is_not_removed(cluster):
    node = cluster.bed.nodes[1]
    cluster.middock("nodes:drain", node.name)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        tasks = running(cluster, "web")
        if len(tasks) == 3 and node.name not in {task["NodeName"] for task in tasks}:
            break
        time.sleep(1)
    assert len(tasks) == 3 and node.name not in {task["NodeName"] for task in tasks}
    rows = {row["name"]: row for row in json.loads(cluster.middock("nodes", "--json").stdout)}
    assert rows[node.name]["availability"] == "drain" and rows[node.name]["tasks"] == 0
    cluster.middock("nodes:activate", node.name)
    rows = {row["name"]: row for row in json.loads(cluster.middock("nodes", "--json").stdout)}
    assert rows[node.name]["availability"] == "active"
    for command, name, message in (("nodes:remove", node.name, "is up"), ("nodes:drain", "nope", "no node 'nope'")):
        refused = cluster.middock(command, name, check=False)
        assert refused.returncode == 1 and message in refused.stderr and len(refused.stderr.splitlines()) == 1


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("    container_name: fixed\n", "service worker: Swarm cannot run `container_name`"),
        ("    network_mode: host\n", "service worker: Swarm cannot run `network_mode`"),
        ("    privileged: true\n", "service worker: Swarm cannot run `privileged`"),
        ("    security_opt: [no-new-privileges:true]\n", "service worker: Swarm cannot run `security_opt`"),
    ],
)
def test_what_swarm_cannot_run_is_refused_before_anything_starts(cluster, change, message):
    cluster.wait_idle(cluster.app)  # what the last deploy replaced is gone
    before = stacks(cluster)
    worker = "    image: middock-test/busybox\n"
    write_web_app(cluster.work, "bad", COMPOSE.replace(worker, worker + change))
    cluster.work.commit("refused")
    result = cluster.work.push()
    assert message in result.stderr and "Running docker/build" not in result.stderr, result.stderr
    assert stacks(cluster) == before


def test_an_image_no_script_built_is_refused(cluster):
    cluster.wait_idle(cluster.app)  # what the last deploy replaced is gone
    before = stacks(cluster)
    write_web_app(cluster.work, "bad", COMPOSE.replace("image: middock-test/busybox", "image: nobody-built-this:1"))
    cluster.work.commit("no such image")
    result = cluster.work.push()
    assert "image nobody-built-this:1 does not exist" in result.stderr, result.stderr
    assert stacks(cluster) == before


def registry_has(server: SwarmServer, reference: str) -> bool:
    """Whether the registry still holds an image, asked from inside the manager's namespace, with
    middock's own password (no other may look)."""
    code = (
        "import sys; from pathlib import Path; from middock_receiver.runtime.registry import Files, Registry;"
        "print(Registry.own(Files(Path(sys.argv[1]))).has(sys.argv[2]))"
    )
    folder = server.home / ".middock" / "_swarm" / "registry"
    result = server.bed.run_in(
        1, [sys.executable, "-c", code, str(folder), reference], capture_output=True, text=True, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip() == "True"


def test_the_registry_keeps_only_the_kept_releases_images_and_the_app_can_go_back_to_one_server(cluster):
    for version in ("v3", "v4"):  # with the earlier ones, keep (2) + 2 good releases or more
        push(cluster, version)
    cluster.wait_idle(cluster.app)  # pruning is part of the retirement that follows live
    history = json.loads(cluster.middock("releases", cluster.app, "--json").stdout)
    kept = [r for r in history if r["result"] == "succeeded" and not r["pruned"]]
    pruned = [r for r in history if r["pruned"] and r["pushed"]]
    assert len(kept) == 2 and pruned
    kept_refs = {ref for r in kept for ref in r["pushed"].values()}
    assert all(registry_has(cluster, ref) for ref in kept_refs)
    gone = {ref for r in pruned for ref in r["pushed"].values()} - kept_refs
    assert gone and not any(registry_has(cluster, ref) for ref in gone)

    cluster.middock("apps:set", cluster.app, "target", "compose")
    load = Load(cluster, cluster.base)
    push(cluster, "v7")
    report = load.stop()
    assert report["failures"] == [], report
    cluster.wait_idle(cluster.app)  # the push ends at live; the stack it replaced goes after
    assert cluster.get() == "v7\n" and stacks(cluster) == set()
    status = json.loads(cluster.middock("status", cluster.app, "--json").stdout)
    assert status["live"]["project"] == f"{cluster.app}_r{status['live']['number']}" and not status["live"]["pushed"]


def test_an_existing_registry_given_to_swarm_init_takes_the_images_and_every_node_trusts_its_ca(
    tmp_path, docker_client
):
    """swarm:init --registry HOST:PORT --registry-ca FILE on a fresh Swarm of 2: the bed's own registry
    (TLS from a throwaway CA no engine trusts yet) is the one the admin has already. middock runs no
    registry of its own, the join script trusts that CA on the worker, and a push deploys through it."""
    with bare_engines(2, registry=True) as bed:
        bed.load_image("middock-test/busybox")
        server = SwarmServer(tmp_path / "home", bed)
        try:
            start_middock(server, "--registry", bed.registry, "--registry-ca", str(bed.ca_cert))
            assert f"registry: {bed.registry}\n" in server.init and "middock's own" not in server.init, server.init
            assert not (server.home / ".middock" / "_swarm" / "registry").exists()
            pushed = first_push(server, tmp_path, "ex")
            assert "is live at" in pushed.stderr, pushed.stderr
            assert server.get() == "v1\n"
            pinned = server.releases(server.app)[0]["pushed"]["web"]
            assert re.fullmatch(rf"{re.escape(bed.registry)}/{server.app}/web@sha256:[0-9a-f]{{64}}", pinned), pinned
            assert_every_node_trusts(bed, bed.registry, bed.ca_cert, pinned, bed.manager.docker_config)
        finally:
            server.cleanup()
