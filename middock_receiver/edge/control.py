"""The edge as deploys and commands use it: render the proxies' configuration from middock's
records, bring the running proxies in line with it, switch an app to a slot, drain a slot.

Every change goes through `apply()` under the edge's lock, so two apps deploying at once never
write over each other's routes, and the files on disk always say what the proxies do: a
restart, a reboot or `edge:start` brings back every route from them. A change of one app's
routes is made at runtime in HAProxy (haproxy.py), in every worker; only a new frontend or new
edge settings reload it, and only new edge settings reload Caddy.

The configuration is shared, but what each app brings to it (its port, domains, slots and
maintenance page) is checked on its own, as the proxies will read it, and against the others':
a part that HAProxy would refuse, or that is another app's, is left out and fails only that
app's own changes, with one line. A configuration HAProxy refuses (`haproxy -c`) is never
written, and one it fails to load at a reload is put back as it was.
"""

from __future__ import annotations

import functools
import hashlib
import os
import pwd
import random
import socket
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .. import process
from ..errors import MiddockError
from ..server import daemons
from ..state import apps
from ..state.apps import App
from . import caddy, haproxy, maintenance, proxies, routes
from .settings import EdgePaths, EdgeSettings, read_settings

NOT_RUNNING = (
    "the edge is not running; start it with: middock edge:start (as root on a server: sudo middock edge:start)"
)
ASK_PORTS = range(19000, 20000)  # HAProxy's `_ask` frontend, on loopback: one per edge
DOMAIN_TIMEOUT = 20.0  # how long domains:add waits for a new domain's certificate


@dataclass(frozen=True)
class Changed:
    haproxy_layout: bool  # HAProxy must reload (its frontends or settings changed)
    caddy: bool
    caddy_tls: bool = False  # how certificates are got: Caddy restarts, so no attempt of the old way lingers
    haproxy_before: dict[Path, str] = field(default_factory=dict)  # HAProxy's files as they were


@dataclass(frozen=True)
class Served:
    """What the apps bring to the edge's shared configuration, each app checked on its own."""

    frontends: list[haproxy.Frontend]
    domains: dict[str, str]  # name -> app
    refused: dict[str, str]  # app -> the one line saying what of it is left off the edge, and why


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

    def served(self) -> Served:
        """What every app brings to the edge, each checked on its own (its record, its settings,
        its page as HAProxy will load it) and against the others and the edge's own ports: a
        part HAProxy would refuse is left out, so that it never stops another app's change.
        An app gets its frontend (and so its port on the edge) at its first switch."""
        parts, refused = routes.contributions(self.apps())
        settings = self.settings
        own = {settings.http_port: "http-port", settings.https_port: "https-port"}
        held = haproxy.bound_ports(read_text(self.paths.haproxy_config))
        taken = routes.edge_port_taken(parts, own, held)
        if taken:
            raise MiddockError(taken)
        ask = self.chosen_ask_port()
        clashes = routes.port_conflicts(parts, {**own, **({ask: "ask port"} if ask else {})}, held)
        parts = [part for part in parts if part.app.name not in clashes]
        parts, lost = routes.domain_conflicts(parts, haproxy.read_map(read_text(self.paths.domains_map)))
        frontends = [frontend(part) for part in parts if part.served]
        domains = {name: part.app.name for part in parts for name in part.record.domains}
        return Served(frontends, domains, refused | clashes | lost)

    def frontends(self) -> list[haproxy.Frontend]:
        """Every app the edge serves: its port, whether public, its slots and the one serving."""
        return self.served().frontends

    def chosen_ask_port(self) -> int | None:
        """The ask port once chosen (a listing of an edge never started chooses none)."""
        try:
            port = int(self.paths.ask_port_file.read_text())
        except (FileNotFoundError, ValueError):
            return None
        return port if port in ASK_PORTS else None

    def ask_port(self) -> int:
        """The loopback port Caddy asks HAProxy on whether a name is a domain: chosen once, at
        random among free ones, so that two homes' edges (two test runs) do not pick the same."""
        chosen = self.chosen_ask_port()
        if chosen:
            return chosen
        free = [port for port in random.sample(ASK_PORTS, 50) if routes.bindable(port, "127.0.0.1")]
        if not free:
            raise MiddockError(f"no free loopback port in {ASK_PORTS.start}-{ASK_PORTS.stop - 1} for the edge")
        apps.write_atomic(self.paths.ask_port_file, f"{free[0]}\n")
        return free[0]

    def layout(self) -> haproxy.Layout:
        settings = self.settings
        redirect = None if settings.tls == "off" else ("" if settings.https_port == 443 else f":{settings.https_port}")
        return haproxy.Layout(
            admin_socket=self.paths.haproxy_socket,
            live_map=self.paths.live_map,
            domains_map=self.paths.domains_map,
            domains_socket=self.paths.domains_socket,
            domains_http_socket=self.paths.domains_http_socket,
            ask_port=self.ask_port(),
            https_redirect=redirect,
        )

    def running(self) -> bool:
        return self.haproxy.answers()

    def require_running(self) -> None:
        if not self.haproxy.answers(haproxy.RELOAD_PATIENCE):
            raise MiddockError(NOT_RUNNING)

    def write(self, served: Served) -> Changed:
        """Render both proxies' configuration and write what changed, each checked by its proxy
        (a configuration HAProxy refuses leaves its files as they were)."""
        self.paths.prepare()
        layout = self.layout()
        files = (self.paths.haproxy_config, self.paths.live_map, self.paths.domains_map)
        before = {path: read_text(path) for path in files}
        config = haproxy.render_config(served.frontends, layout)
        try:  # the maps first: HAProxy's check loads them
            write_if_changed(self.paths.live_map, haproxy.render_map(haproxy.live_entries(served.frontends)))
            write_if_changed(self.paths.domains_map, haproxy.render_map(served.domains))
            write_if_changed(self.paths.haproxy_config, config, check_haproxy)
        except MiddockError:
            put_back(before)
            raise
        caddy_config = caddy.dumps(caddy.render(self.settings, self.paths, layout.ask_port))
        caddy_before = read_text(self.paths.caddy_config)
        caddy_changed = write_if_changed(self.paths.caddy_config, caddy_config, caddy.check_config)
        tls_changed = bool(caddy_before) and caddy.tls_of(caddy_before) != caddy.tls_of(caddy_config)
        layout_changed = haproxy.layout_of(before[self.paths.haproxy_config]) != haproxy.layout_of(config)
        return Changed(layout_changed, caddy_changed, tls_changed, before)

    def apply(self, app: App | None = None, leaving: bool = False) -> None:
        """Bring the running proxies in line with the records, after a change of `app`'s routes
        (its slots, the one serving, its domains, its port), or of everything. A part of `app`
        the edge refuses fails the change, unless the app is `leaving` the edge; another
        app's is only left out."""
        with self.paths.locked():
            served = self.served()
            if app and not leaving and app.name in served.refused:
                raise MiddockError(served.refused[app.name])
            changed = self.write(served)
            if self.running():
                if changed.haproxy_layout:
                    self.reload(changed.haproxy_before)
                self.sync({app.name} if app else None, served)
            if changed.caddy_tls and self.caddy.answers():
                self.restart_caddy()
            elif changed.caddy and self.caddy.answers():
                self.caddy.load(self.paths.caddy_config.read_text())

    def restart_caddy(self) -> None:
        """Caddy anew, with the configuration on disk: a certificate it was still trying to get
        the old way (an ACME CA it cannot reach) would otherwise block the new way for that name
        until it gives up. systemd starts it again by itself; elsewhere we do."""
        owner = daemons.Owner.of(pwd.getpwuid(os.geteuid()))
        daemon = proxies.daemon("caddy", self.paths, owner)
        supervised, pid = daemons.supervised(daemon, owner), daemons.pid_of(daemon)
        self.caddy.stop()
        if pid:
            daemons.wait_stopped(daemon, pid)
        if not supervised:
            daemons.start(daemon, owner)
        daemons.wait_started(daemon, self.caddy.answers)

    def reload(self, before: dict[Path, str]) -> None:
        """Reload HAProxy; when it fails (a port it cannot bind), its workers go on with the last
        configuration, and so do its files: they are put back as they were."""
        try:
            self.haproxy.reload()
        except MiddockError:
            put_back(before)
            raise

    def sync(self, names: set[str] | None = None, served: Served | None = None) -> None:
        """HAProxy's runtime state, in every worker, as the records say (every app's, or `names`')."""
        served = served or self.served()
        names = names if names is not None else {app.name for app in self.apps()}
        self.haproxy.sync(served.frontends, served.domains, self.layout(), names)

    # Starting is three steps, because under systemd only root may start the proxies, and only the
    # user writes the files: prepare (the user), launch (root or the user), finish (the user).

    def prepare_start(self) -> dict[str, bool]:
        """Write the configuration the proxies start with; which of them run already."""
        with self.paths.locked():
            running = {"haproxy": self.running(), "caddy": self.caddy.answers()}
            self.write(self.served())
            return running

    def launch(self, owner: daemons.Owner) -> None:
        """Start whichever proxy is not running (under systemd: enable its unit)."""
        for proxy in proxies.PROXIES:
            daemons.start(proxies.daemon(proxy, self.paths, owner), owner)

    def finish_start(self, running: dict[str, bool], owner: daemons.Owner) -> list[str]:
        """Wait until both answer; bring one that was running in line with the records. Returns
        what to tell the user: the edge's ports, then where each app is served."""
        with self.paths.locked():
            daemons.wait_started(proxies.daemon("haproxy", self.paths, owner), self.running)
            daemons.wait_started(proxies.daemon("caddy", self.paths, owner), self.caddy.answers)
            if running["haproxy"]:
                self.haproxy.reload()
            served = self.served()
            self.sync(None, served)
            if running["caddy"]:
                self.caddy.load(self.paths.caddy_config.read_text())
        settings = self.settings
        lines = [f"{fe.app}: {' '.join(self.urls(App(fe.app, self.paths.home)))}" for fe in served.frontends]
        lines += [f"{name}: left off the edge: {why}" for name, why in sorted(served.refused.items())]
        return [f"The edge is running: http on {settings.http_port}, https on {settings.https_port}", *lines]

    def start(self, owner: daemons.Owner) -> list[str]:
        """All three steps, by a user who may start the proxies itself."""
        running = self.prepare_start()
        self.launch(owner)
        return self.finish_start(running, owner)

    def stop(self, owner: daemons.Owner) -> None:
        for proxy in reversed(proxies.PROXIES):
            daemons.stop(proxies.daemon(proxy, self.paths, owner), owner)

    def switch(self, app: App, slot: str | None) -> None:
        """Send the app's new requests to `slot` (None: to no release). An app's first switch
        gives it its port on the edge (chosen under the lock, so two first deploys at once never
        take the same one)."""
        with self.paths.locked():
            record = routes.load(app)
            if slot and not record.serving:
                port = routes.choose_app_port(app)
                if not routes.bindable(port):
                    raise MiddockError(
                        f"port {port} is in use on this server; choose another: apps:set {app.name} port N"
                    )
            record.serving = slot
            routes.save(app, record)
            self.apply(app)

    def set_maintenance(self, app: App, on: bool) -> None:
        """Answer every request of the app with its maintenance page, or with its live slot
        again: one runtime change of the map in every worker, as a switch is."""
        with self.paths.locked():
            record = routes.load(app)
            was, record.maintenance = record.maintenance, on
            routes.save(app, record)
            try:
                self.apply(app)
            except MiddockError:  # the edge refused the app: its record stays as it was
                record.maintenance = was
                routes.save(app, record)
                raise

    def drain(self, app: App, slot: str, timeout: float) -> float | None:
        return self.haproxy.drain(app.name, slot, timeout)

    def forget(self, app: App) -> None:
        """Take the app off the edge (it runs in place again, or it is destroyed)."""
        record = routes.load(app)
        record.slots, record.serving = {}, None
        routes.save(app, record)
        self.apply(app, leaving=True)

    def get_certificates(self, names: list[str], say: Callable[[str], None]) -> None:
        """Have Caddy get new domains' certificates now, one after another (the first registers
        the ACME account), rather than at a visitor's first request."""
        settings = self.settings
        if settings.tls == "off" or not self.caddy.answers():
            return
        for name in names:
            problem = caddy.first_handshake(settings.https_port, name, DOMAIN_TIMEOUT)
            state = caddy.certificate(self.paths, name)
            if problem and state == "pending":
                say(f"{name}: no certificate yet ({problem}); Caddy tries again at the first HTTPS request")
            else:
                say(f"{name}: certificate {state}")

    def urls(self, app: App) -> list[str]:
        """Where the app is live: its domains, else its own port on this server."""
        domains = routes.load(app).domains
        if domains:
            settings = self.settings
            if settings.tls == "off":
                suffix = "" if settings.http_port == 80 else f":{settings.http_port}"
                return [f"http://{name}{suffix}/" for name in domains]
            suffix = "" if settings.https_port == 443 else f":{settings.https_port}"
            return [f"https://{name}{suffix}/" for name in domains]
        port = routes.app_port(app)
        return [f"http://{host_name()}:{port}/"] if port else []


@functools.cache
def host_name() -> str:
    """This server's name, looked up once a process (a listing of every app's URL, the dashboard)."""
    return socket.getfqdn()


def frontend(part: routes.Contribution) -> haproxy.Frontend:
    """An app as HAProxy serves it, with its maintenance page as HAProxy will load it."""
    page = maintenance.edge_page(part.app)
    return haproxy.Frontend(
        part.app.name,
        part.port or 0,
        not part.record.domains,
        {slot: tuple(ends) for slot, ends in part.record.slots.items()},
        part.record.serving,
        maintenance.page_path(part.app) if page else None,
        hashlib.sha256(page or b"").hexdigest()[:16],
        part.record.maintenance,
    )


def read_text(path: Path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""


def write_if_changed(path: Path, text: str, check: Callable[[Path], None] | None = None) -> bool:
    """Write `path` atomically when its text changes; `check` may refuse the new text first."""
    if path.exists() and read_text(path) == text:
        return False
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


def put_back(before: dict[Path, str]) -> None:
    """Files as they were (one that was not there is left: nothing refers to it)."""
    for path, text in before.items():
        if text:
            write_if_changed(path, text)


def check_haproxy(path: Path) -> None:
    """`haproxy -c` on a rendered configuration; a refusal is HAProxy's own message."""
    if not os.access(proxies.PROGRAMS["haproxy"], os.X_OK):
        raise MiddockError("the edge needs HAProxy: install the haproxy package (install.sh does)")
    result = process.capture([proxies.PROGRAMS["haproxy"], "-c", "-f", str(path)], cwd=path.parent)
    if result.returncode != 0:
        lines = [line.strip() for line in (result.stderr + result.stdout).splitlines() if line.strip()]
        alerts = [line for line in lines if "[ALERT]" in line and "Fatal errors" not in line]
        problem = (alerts or lines or ["haproxy -c said nothing"])[0]
        raise MiddockError(f"the edge's HAProxy configuration is invalid: {problem}")
