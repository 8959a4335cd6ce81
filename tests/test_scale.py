"""Many apps behind one edge (PRODUCT.md §12): first pushes of several apps at once all go live,
with and without a port given first; every network a release gets is a small subnet of
middock's own (Docker's default pools hold about 30); a deploy, an instant rollback and a
restart of one app fail no request of its neighbours. bench/scale.py measures the same with
100 apps; this asserts behaviour, not times."""

from __future__ import annotations

import ipaddress
import json
import threading
import time

import docker
import pytest
from support.apps import WEB_APP_COMPOSE, write_web_app
from support.groups import ZERO_DROP
from support.load import Load
from support.middock import Workdir
from support.ports import free_port
from support.web import http_get

ONE_SERVICE = WEB_APP_COMPOSE.split("  worker:")[0]


def first_push(server, tmp_path, app: str, pushed: dict[str, str]) -> None:
    work = Workdir(tmp_path / app)
    work.git("remote", "add", "production", str(server.repo_path(app)))
    write_web_app(work, f"{app}-v1", ONE_SERVICE)
    work.commit("v1")
    pushed[app] = work.push().stderr


@ZERO_DROP
@pytest.mark.slow
def test_apps_deployed_at_once_go_live_on_networks_of_their_own_and_neighbours_lose_nothing(
    server, tmp_path, docker_client: docker.DockerClient
):
    server.start_edge()
    apps = [server.create_app("sc") for _ in range(8)]
    for app in apps[1::2]:  # a port given first must not count as taken by the edge's own listener
        server.middock("apps:set", app, "port", str(free_port()))
    pushed: dict[str, str] = {}
    for batch in (apps[:4], apps[4:]):  # four first pushes at a time
        threads = [threading.Thread(target=first_push, args=(server, tmp_path, app, pushed)) for app in batch]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    failed = {app: out for app, out in pushed.items() if "is live" not in out}
    assert not failed, "\n".join(failed.values())
    for app in apps:
        assert http_get(server.app_port(app)) == f"{app}-v1\n"

    ranges = ipaddress.IPv4Network("10.200.0.0/16"), ipaddress.IPv4Network("10.254.0.0/16")
    for app in apps:
        project = json.loads(server.middock("status", app, "--json").stdout)["live"]["project"]
        (network,) = docker_client.networks.list(filters={"label": f"com.docker.compose.project={project}"})
        subnet = ipaddress.IPv4Network(network.attrs["IPAM"]["Config"][0]["Subnet"])
        assert subnet.prefixlen == 26 and ranges[0].network_address <= subnet.network_address
        assert subnet.network_address <= ranges[1].broadcast_address, subnet

    subject, neighbours = apps[0], apps[1:4]
    loads = [Load(server.app_port(app), keepalive=1, fresh=1, slow=1) for app in neighbours]
    for load in loads:
        load.start()
    time.sleep(1)
    work = Workdir(tmp_path / "subject")
    work.git("remote", "add", "production", str(server.repo_path(subject)))
    write_web_app(work, "v2", ONE_SERVICE)
    work.commit("v2")
    work.git("push", "-f", "production", "main")
    server.wait_idle(subject)
    server.middock("rollback", subject)
    server.wait_idle(subject)
    server.middock("ps:restart", subject)
    time.sleep(1)
    reports = [load.stop() for load in loads]
    for app, report in zip(neighbours, reports, strict=True):
        assert not report.failures and report.versions() == {f"{app}-v1"}, report.summary()
    assert http_get(server.app_port(subject)) == f"{subject}-v1\n"
