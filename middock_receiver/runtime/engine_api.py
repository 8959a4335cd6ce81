"""The Engine's API read straight over its Unix socket, for the commands that only look at an
app's containers (`status`, `ps`, the dashboard's pages).

The SDK (engine.py), with requests and urllib3, costs a command about 35 ms to import and
three round trips to set up, more than all the rest of `status`. Looking needs two requests
of the documented API, so the standard library's HTTP client makes them; everything that
changes the engine, and every other read, goes through the SDK.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
from typing import Any
from urllib.parse import quote, urlencode

from ..errors import MiddockError
from .compose import PROJECT_LABEL, one_off
from .engine import unreachable

DEFAULT_SOCKET = "/var/run/docker.sock"  # the SDK's and the docker client's default too
TIMEOUT = 30


def socket_path() -> str | None:
    """The daemon's socket, as DOCKER_HOST names it (rootless.use_own_daemon sets it for a user
    with a daemon of their own); None when DOCKER_HOST names no Unix socket (only the SDK speaks TCP
    and TLS)."""
    host = os.environ.get("DOCKER_HOST", "")
    if not host:
        return DEFAULT_SOCKET
    return host.removeprefix("unix://") if host.startswith("unix://") else None


class UnixConnection(http.client.HTTPConnection):
    """HTTP to the daemon's Unix socket."""

    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=TIMEOUT)
        self.socket_path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.socket_path)


class EngineReader:
    """One connection, for the reads of one command."""

    def __init__(self, path: str) -> None:
        self.connection = UnixConnection(path)

    def get(self, path: str, missing_ok: bool = False) -> Any:  # noqa: ANN401 - the API's JSON
        """The JSON the daemon answers to GET `path`; None for a 404 when `missing_ok`."""
        try:
            self.connection.request("GET", path)
            response = self.connection.getresponse()
            body = response.read()
        except OSError as error:
            raise unreachable(error.strerror or str(error)) from None
        if response.status == 404 and missing_ok:
            return None
        if response.status != 200:
            message = json.loads(body or b"{}").get("message", "") if body.startswith(b"{") else body.decode()
            raise MiddockError(f"the Docker daemon answered {response.status} to {path}: {message[:200]}")
        return json.loads(body)

    def project_containers(self, project: str) -> list[dict]:
        """What `docker inspect` shows of each of the compose project's containers, one-offs
        aside; one removed while listing is left out (as health.project_containers does)."""
        filters = json.dumps({"label": [f"{PROJECT_LABEL}={project}"]})
        listed = self.get(f"/containers/json?{urlencode({'all': 1, 'filters': filters})}")
        found = []
        for summary in listed:
            if one_off(summary.get("Labels") or {}):
                continue
            inspected = self.get(f"/containers/{quote(summary['Id'])}/json", missing_ok=True)
            if inspected is not None:
                found.append(inspected)
        return found

    def close(self) -> None:
        self.connection.close()
