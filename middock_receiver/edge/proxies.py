"""The edge's two proxies, HAProxy and Caddy from the distribution's packages, as programs
middock keeps running (server/daemons.py): their command lines and environment.

Either way they run (systemd units or background processes of the deploy user), they read the
configuration middock rendered from its records, and their admin interfaces are unix sockets
only the deploy user can open.
"""

from __future__ import annotations

from ..server.daemons import Daemon, Owner
from .settings import EdgePaths

PROXIES = ("haproxy", "caddy")
PROGRAMS = {"haproxy": "/usr/sbin/haproxy", "caddy": "/usr/bin/caddy"}


def command(proxy: str, paths: EdgePaths, foreground: bool) -> list[str]:
    """HAProxy in master-worker mode (under systemd with its notify support, else as a daemon that
    returns once it listens); Caddy with its pidfile."""
    if proxy == "haproxy":
        mode = ["-Ws"] if foreground else ["-W", "-D"]
        config = ["-f", str(paths.haproxy_config), "-p", str(paths.pidfile(proxy))]
        return [PROGRAMS[proxy], *mode, *config, "-S", f"{paths.haproxy_master_socket},mode,600"]
    return [PROGRAMS[proxy], "run", "--config", str(paths.caddy_config), "--pidfile", str(paths.pidfile(proxy))]


def daemon(proxy: str, paths: EdgePaths, owner: Owner) -> Daemon:
    """Caddy keeps its autosave and data under the edge's folder, never in the user's dotfiles."""
    env = {
        "HOME": str(owner.home),
        "XDG_CONFIG_HOME": str(paths.root / "config"),
        "XDG_DATA_HOME": str(paths.caddy_data),
    }
    return Daemon(
        name=proxy,
        background=command(proxy, paths, foreground=False),
        foreground=command(proxy, paths, foreground=True),
        folder=paths.root,
        log=paths.logs / f"{proxy}.log",
        env=env,
        forks=proxy == "haproxy",
        notify=proxy == "haproxy",
        reload_signal="USR2" if proxy == "haproxy" else "",
        prepare=str(paths.run),
    )
