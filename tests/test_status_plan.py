"""What `status` reads, without Docker: the daemon's socket it reads containers over, the rows it
makes of what `docker inspect` shows, and whether a crashed deploy left anything to settle (only
then does `status` load the deploy pipeline)."""

from __future__ import annotations

import pytest

from middock_receiver.operate.running import service_rows
from middock_receiver.runtime import engine_api
from middock_receiver.state import releases
from middock_receiver.state.apps import App


@pytest.mark.parametrize(
    ("docker_host", "socket"),
    [
        (None, "/var/run/docker.sock"),
        ("", "/var/run/docker.sock"),
        ("unix:///run/user/1001/docker.sock", "/run/user/1001/docker.sock"),
        ("tcp://10.0.0.5:2376", None),  # the SDK's: TLS and all
        ("ssh://admin@box", None),
    ],
)
def test_the_daemon_socket_is_the_one_docker_host_names(monkeypatch, docker_host, socket):
    if docker_host is None:
        monkeypatch.delenv("DOCKER_HOST", raising=False)
    else:
        monkeypatch.setenv("DOCKER_HOST", docker_host)
    assert engine_api.socket_path() == socket


def inspected(name: str, service: str, number: str, state: dict, restarts: int = 0) -> dict:
    labels = {"com.docker.compose.service": service, "com.docker.compose.container-number": number}
    return {"Name": f"/{name}", "Config": {"Labels": labels}, "State": state, "RestartCount": restarts}


def test_status_rows_come_from_what_docker_inspect_shows_sorted_by_service_and_number():
    running = {"Status": "running", "StartedAt": "2026-12-07T10:00:00.123456789Z", "Health": {"Status": "healthy"}}
    exited = {"Status": "exited", "StartedAt": "2026-12-07T09:00:00Z"}
    rows = service_rows(
        [
            inspected("shop_r2-worker-1", "worker", "1", exited, restarts=3),
            inspected("shop_r2-web-2", "web", "2", running),
            inspected("shop_r2-web-1", "web", "1", running),
        ]
    )
    assert [(row["container"], row["state"], row["health"]) for row in rows] == [
        ("shop_r2-web-1", "running", "healthy"),
        ("shop_r2-web-2", "running", "healthy"),
        ("shop_r2-worker-1", "exited", None),
    ]
    assert rows[0]["started"] == "2026-12-07T10:00:00.123456789Z"
    assert rows[2]["started"] is None and rows[2]["restarts"] == 3


def test_only_a_deploy_left_deploying_or_a_live_release_left_draining_is_unsettled(tmp_path):
    app = App("shop", tmp_path)
    app.state.mkdir(parents=True)
    assert not releases.unsettled(app)  # never deployed
    first = releases.Release(1, "a" * 40, "refs/heads/main")
    releases.folder(app, 1).mkdir(parents=True)
    releases.save(app, first)
    assert releases.unsettled(app)  # deploying: a crash, or a deploy under way (which holds the lock)
    releases.finish(app, first, releases.SUCCEEDED)
    releases.set_live(app, first.number)
    first.stage = "drain"
    releases.save(app, first)
    assert releases.unsettled(app)  # live, but what it replaced may still run
    first.stage = releases.RETIRED
    releases.save(app, first)
    assert not releases.unsettled(app)
