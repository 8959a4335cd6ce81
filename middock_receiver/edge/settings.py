"""The edge's own settings (`edge:set`) and where its files live.

Everything of the edge lives under the deploy user's home, in `~/.middock/_edge/` (`_` never
starts an app name), so two homes run two edges on their own ports. Its unix sockets go there
too, unless that path is too long for a socket address; then they go to a folder named after the
home in the home owner's own `/run/middock/UID`, which only root creates (never in /tmp, where
another account could take the name first).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from .. import flock
from ..errors import MiddockError
from ..server import machine
from ..settings import EDGE_SETTINGS
from ..state.apps import middock_home, write_atomic

SOCKET_PATH_MAX = 90  # sun_path holds 108 bytes, and HAProxy binds to "PATH.PID.tmp" first


@dataclass(frozen=True)
class EdgeSettings:
    http_port: int = EDGE_SETTINGS["http-port"].default
    https_port: int = EDGE_SETTINGS["https-port"].default
    acme_email: str = EDGE_SETTINGS["acme-email"].default
    acme_ca: str = EDGE_SETTINGS["acme-ca"].default  # empty: Let's Encrypt
    acme_ca_root: str = EDGE_SETTINGS["acme-ca-root"].default  # a CA file to trust for the ACME server's own TLS
    tls: str = EDGE_SETTINGS["tls"].default
    app_ports: str = EDGE_SETTINGS["app-ports"].default
    slot_ports: str = EDGE_SETTINGS["slot-ports"].default
    dashboard: str = EDGE_SETTINGS["dashboard"].default  # empty: only through an SSH tunnel
    dashboard_port: int = EDGE_SETTINGS["dashboard-port"].default

    def as_dict(self) -> dict:
        return {key.replace("_", "-"): value for key, value in asdict(self).items()}


def parse_setting(key: str, value: str) -> tuple[str, str | int]:
    """Validate one `edge:set KEY=VALUE` (its check in the settings' table); returns the field name
    and its typed value."""
    setting = EDGE_SETTINGS.get(key)
    if setting is None:
        known = ", ".join(EdgeSettings().as_dict())
        raise MiddockError(f"unknown edge setting {key!r}; settings are: {known}")
    return key.replace("-", "_"), setting.check(key, value)


class EdgePaths:
    """The edge's files under one home."""

    def __init__(self, home: Path | None = None) -> None:
        self.home = home or middock_home()
        self.root = self.home / ".middock" / "_edge"
        self.held = False

    @property
    def settings(self) -> Path:
        return self.root / "settings.json"

    @property
    def haproxy_config(self) -> Path:
        return self.root / "haproxy.cfg"

    @property
    def live_map(self) -> Path:
        return self.root / "live.map"

    @property
    def domains_map(self) -> Path:
        return self.root / "domains.map"

    @property
    def ask_port_file(self) -> Path:
        return self.root / "ask.port"

    @property
    def caddy_config(self) -> Path:
        return self.root / "caddy.json"

    @property
    def caddy_data(self) -> Path:
        return self.root / "caddy"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    def pidfile(self, proxy: str) -> Path:
        return self.root / f"{proxy}.pid"

    @property
    def sockets_beside(self) -> bool:
        """Whether the sockets fit beside the rest (a socket's path has a short limit)."""
        return len(str(self.root / "run" / "haproxy-master.sock")) <= SOCKET_PATH_MAX

    @property
    def run(self) -> Path:
        """The folder of the sockets: beside the rest, or in the home owner's /run/middock/UID
        when that path is too long."""
        if self.sockets_beside:
            return self.root / "run"
        digest = hashlib.sha256(str(self.root).encode()).hexdigest()[:16]
        return machine.RUN / str(self.home.stat().st_uid) / f"edge-{digest}"

    @property
    def haproxy_socket(self) -> Path:
        return self.run / "haproxy.sock"

    @property
    def haproxy_master_socket(self) -> Path:
        return self.run / "haproxy-master.sock"

    @property
    def caddy_socket(self) -> Path:
        return self.run / "caddy-admin.sock"

    @property
    def domains_socket(self) -> Path:
        """Where Caddy hands HAProxy the requests of the apps' domains."""
        return self.run / "domains.sock"

    @property
    def domains_http_socket(self) -> Path:
        """Where Caddy hands HAProxy plain HTTP for the apps' domains (redirected when TLS is on)."""
        return self.run / "domains-http.sock"

    def prepare(self) -> None:
        """Create the folders; the sockets' folder private to the edge's owner (never one planted by another)."""
        for folder in (self.root, self.caddy_data, self.logs):
            folder.mkdir(parents=True, exist_ok=True)
        if not self.sockets_beside:
            owner = self.home.stat()
            machine.user_folder(owner.st_uid, owner.st_gid)
        run = self.run
        with contextlib.suppress(FileExistsError):
            run.mkdir(mode=0o700)
        found = machine.problem(os.lstat(run), self.root.stat().st_uid, stat.S_IFDIR, 0o077)
        if found:
            raise MiddockError(f"{run} is not a private folder of this user ({found}); remove it and try again")

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """One change of the edge's configuration at a time, across all apps' deploys (re-entrant
        within this object, so a command may hold it around a change that applies it)."""
        if self.held:
            yield
            return
        self.root.mkdir(parents=True, exist_ok=True)
        with flock.held(self.root / "edge.lock"):
            self.held = True
            try:
                yield
            finally:
                self.held = False


def read_settings(paths: EdgePaths) -> EdgeSettings:
    """The edge's settings, each checked as `edge:set` checks it (whoever wrote the file)."""
    try:
        stored = json.loads(paths.settings.read_text())
        values = {}
        for field, value in stored.items():
            if field in EdgeSettings.__dataclass_fields__:
                values[field] = parse_setting(field.replace("_", "-"), str(value))[1]
        settings = EdgeSettings(**values)
    except FileNotFoundError:
        return EdgeSettings()
    except (ValueError, AttributeError, MiddockError) as error:
        raise MiddockError(f"{paths.settings} is not a valid record: {error}; fix or remove it") from None
    if settings.http_port == settings.https_port:
        raise MiddockError(f"{paths.settings} is not a valid record: http-port and https-port are the same")
    return settings


def dashboard_port(home: Path) -> int:
    """The loopback port of the home's dashboard (every key may forward to it: server/keys.py)."""
    return read_settings(EdgePaths(home)).dashboard_port


def parse_assignments(assignments: list[str]) -> dict[str, str | int]:
    """`edge:set KEY=VALUE…` -> the fields to change and their typed values, each checked."""
    changes = {}
    for assignment in assignments:
        key, sep, value = assignment.partition("=")
        if not sep:
            raise MiddockError(f"expected KEY=VALUE, got {assignment!r}")
        field, typed = parse_setting(key, value)
        changes[field] = typed
    return changes


def write_settings(paths: EdgePaths, changes: dict[str, str | int]) -> EdgeSettings:
    """The settings with these fields changed (parse_assignments), saved."""
    settings = EdgeSettings(**(asdict(read_settings(paths)) | changes))
    if settings.http_port == settings.https_port:
        raise MiddockError("http-port and https-port must differ")
    if settings.dashboard and settings.tls == "off":
        raise MiddockError("the dashboard is served on a domain only over HTTPS: set tls=acme or tls=internal first")
    paths.root.mkdir(parents=True, exist_ok=True)
    write_atomic(paths.settings, json.dumps(asdict(settings), indent=2) + "\n")
    return settings
