"""The edge as deploys and commands use it: render the proxies' configuration from middock's
records, bring the running proxies in line with it, switch an app to a slot, drain a slot.

Every change goes through `apply()` under the edge's lock, so two apps deploying at once never
write over each other's routes, and the files on disk always say what the proxies do: a
restart, a reboot or `edge:start` brings back every route from them.
"""

from __future__ import annotations

import os
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .. import daemons, process
from ..errors import MiddockError
from ..state import apps
from ..state.apps import App
from . import caddy, haproxy, proxies, routes
from .settings import EdgePaths, EdgeSettings, read_settings

NOT_RUNNING = (
    "the edge is not running; start it with: middock edge:start (as root on a server: sudo middock edge:start)"
)


@dataclass(frozen=True)
class Changed:
    haproxy: bool
    caddy: bool


class Edge:
    """The edge of one home (the deploy user's)."""

    def __init__(self, home: Path | None = None) -> None:
        self.paths = EdgePaths(home)
        self.haproxy = haproxy.Master(self.paths.haproxy_master_socket)
        self.caddy = caddy.Admin(self.paths.caddy_socket)

    @property
    def settings(self) -> EdgeSettings:
        return read_settings(self.paths)

    def apps(self) -> list[App]:
        return apps.all_apps(self.paths.home)

    def frontends(self) -> list[haproxy.Frontend]:
        """Every app that has run behind the edge: its port, domains and slots."""
        found = []
        for app in self.apps():
            record = routes.load(app)
            port = routes.app_port(app)
            if record.slots and port:
                slots = {slot: tuple(ports) for slot, ports in record.slots.items()}
                found.append(haproxy.Frontend(app.name, port, not record.domains, slots, record.serving))
        return found

    def sites(self, frontends: list[haproxy.Frontend]) -> list[caddy.Site]:
        return [
            caddy.Site(fe.app, tuple(routes.load(App(fe.app, self.paths.home)).domains), fe.port)
            for fe in frontends
            if not fe.public
        ]

    def running(self) -> bool:
        return self.haproxy.answers()

    def require_running(self) -> None:
        if not self.running():
            raise MiddockError(NOT_RUNNING)

    def write(self) -> Changed:
        """Render both proxies' configuration; write what changed (HAProxy's after checking it)."""
        self.paths.prepare()
        frontends = self.frontends()
        write_if_changed(self.paths.live_map, haproxy.render_map(frontends))
        config = haproxy.render_config(frontends, self.paths.haproxy_socket, self.paths.live_map)
        haproxy_changed = write_if_changed(self.paths.haproxy_config, config, check_haproxy)
        caddy_config = caddy.render(self.sites(frontends), self.settings, self.paths)
        caddy_changed = write_if_changed(self.paths.caddy_config, caddy.dumps(caddy_config))
        return Changed(haproxy_changed, caddy_changed)

    def apply(self) -> None:
        """Bring the running proxies in line with the records (after a deploy or a route change)."""
        with self.paths.locked():
            changed = self.write()
            if self.running():
                if changed.haproxy:
                    self.haproxy.reload()
                for fe in self.frontends():
                    if fe.serving:
                        self.haproxy.set_serving(self.paths.live_map, fe.app, fe.serving)
            if changed.caddy and self.caddy.answers():
                self.load_caddy()

    def start(self, owner: daemons.Owner) -> None:
        """Start whichever proxy is not running, with the configuration of the records; bring a
        running one in line with them."""
        with self.paths.locked():
            running = {"haproxy": self.running(), "caddy": self.caddy.answers()}
            self.write()
            first = self.account_first()
            if first and not running["caddy"]:
                write_if_changed(self.paths.caddy_config, caddy.dumps(first))
            for proxy in proxies.PROXIES:
                daemons.start(proxies.daemon(proxy, self.paths, owner), owner)
            daemons.wait_started(proxies.daemon("haproxy", self.paths, owner), self.running)
            daemons.wait_started(proxies.daemon("caddy", self.paths, owner), self.caddy.answers)
            if running["haproxy"]:
                self.haproxy.reload()
            if first or running["caddy"]:
                self.write()
                self.load_caddy()

    def account_first(self) -> dict | None:
        """Caddy 2.6 may register several ACME accounts at once when it starts with several
        domains and none yet, and then fail every order ("JWS verification error"); so on fresh
        storage it first gets one domain, and the rest once the account exists."""
        sites = self.sites(self.frontends())
        if self.settings.tls != "acme" or caddy.has_account(self.paths) or sum(len(s.domains) for s in sites) < 2:
            return None
        return caddy.render([caddy.Site(sites[0].app, sites[0].domains[:1], sites[0].port)], self.settings, self.paths)

    def load_caddy(self) -> None:
        first = self.account_first()
        if first:
            self.caddy.load(caddy.dumps(first))
            caddy.wait_for_account(self.paths)
        self.caddy.load(self.paths.caddy_config.read_text())

    def stop(self, owner: daemons.Owner) -> None:
        for proxy in reversed(proxies.PROXIES):
            daemons.stop(proxies.daemon(proxy, self.paths, owner), owner)

    def switch(self, app: App, slot: str | None) -> None:
        """Send the app's new requests to `slot` (None: to no release)."""
        record = routes.load(app)
        record.serving = slot
        routes.save(app, record)
        self.apply()

    def drain(self, app: App, slot: str, timeout: float) -> float | None:
        return self.haproxy.drain(app.name, slot, timeout)

    def forget(self, app: App) -> None:
        """Take the app off the edge (it runs in place again, or it is destroyed)."""
        record = routes.load(app)
        record.slots, record.serving = {}, None
        routes.save(app, record)
        self.apply()

    def urls(self, app: App) -> list[str]:
        """Where the app is live: its domains, else its own port on this server."""
        settings = self.settings
        domains = routes.load(app).domains
        if domains:
            if settings.tls == "off":
                suffix = "" if settings.http_port == 80 else f":{settings.http_port}"
                return [f"http://{name}{suffix}/" for name in domains]
            suffix = "" if settings.https_port == 443 else f":{settings.https_port}"
            return [f"https://{name}{suffix}/" for name in domains]
        port = routes.app_port(app)
        return [f"http://{socket.getfqdn()}:{port}/"] if port else []


def write_if_changed(path: Path, text: str, check=None) -> bool:  # noqa: ANN001
    """Write `path` atomically when its text changes; `check` may refuse the new text first."""
    try:
        if path.read_text() == text:
            return False
    except FileNotFoundError:
        pass
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    try:
        if check:
            check(Path(tmp))
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return True


def check_haproxy(path: Path) -> None:
    if not os.access(proxies.PROGRAMS["haproxy"], os.X_OK):
        raise MiddockError("the edge needs HAProxy: install the haproxy package (install.sh does)")
    result = process.capture([proxies.PROGRAMS["haproxy"], "-c", "-q", "-f", str(path)])
    if result.returncode != 0:
        problem = (result.stderr or result.stdout).strip().splitlines()
        raise MiddockError(f"the edge's HAProxy configuration is invalid: {problem[-1] if problem else 'no message'}")
