"""Starting and stopping the edge's two proxies, HAProxy and Caddy, from the distribution's
packages.

Where the server runs systemd and root asks, each proxy is a unit of middock's own
(`/etc/systemd/system/middock-edge-*.service`, which package upgrades never touch), enabled so
it comes back after a reboot, running as the deploy user with only the right to bind low ports.
Elsewhere (a container, this test suite) they are background processes of the deploy user,
started by middock running as that user (root hands over with `setpriv`, keeping that right).
Either way they read the configuration middock rendered from its records, and their admin
interfaces are unix sockets only the deploy user can open.
"""

from __future__ import annotations

import os
import pwd
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from .. import process
from ..errors import MiddockError
from .settings import EdgePaths

PROXIES = ("haproxy", "caddy")
PROGRAMS = {"haproxy": "/usr/sbin/haproxy", "caddy": "/usr/bin/caddy"}
UNIT_DIR = Path("/etc/systemd/system")
START_TIMEOUT = 15.0


@dataclass(frozen=True)
class Owner:
    """The deploy user the proxies run as."""

    name: str
    uid: int
    gid: int
    home: Path

    @classmethod
    def of(cls, user: pwd.struct_passwd) -> Owner:
        return cls(user.pw_name, user.pw_uid, user.pw_gid, Path(user.pw_dir))


def program(proxy: str) -> str:
    path = PROGRAMS[proxy]
    if not os.access(path, os.X_OK):
        package = "haproxy" if proxy == "haproxy" else "caddy"
        raise MiddockError(f"{path} is missing: install the {package} package (install.sh does)")
    return path


def argv(proxy: str, paths: EdgePaths, systemd: bool = False) -> list[str]:
    """The command line of a proxy: in the foreground under systemd, else as a daemon."""
    if proxy == "haproxy":
        mode = ["-Ws"] if systemd else ["-W", "-D"]
        return [
            program(proxy),
            *mode,
            "-f",
            str(paths.haproxy_config),
            "-p",
            str(paths.pidfile(proxy)),
            "-S",
            f"{paths.haproxy_master_socket},mode,600",
        ]
    return [program(proxy), "run", "--config", str(paths.caddy_config), "--pidfile", str(paths.pidfile(proxy))]


def proxy_env(paths: EdgePaths, owner: Owner) -> dict[str, str]:
    """Caddy keeps its autosave and data under the edge's folder, never in the user's dotfiles."""
    return {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": str(owner.home),
        "XDG_CONFIG_HOME": str(paths.root / "config"),
        "XDG_DATA_HOME": str(paths.caddy_data),
    }


def unit_name(proxy: str, owner: Owner) -> str:
    return f"middock-edge-{proxy}-{owner.name}.service"


def render_unit(proxy: str, paths: EdgePaths, owner: Owner) -> str:
    """A systemd unit that runs the proxy as the deploy user, allowed to bind ports 80 and 443."""
    command = " ".join(argv(proxy, paths, systemd=True))
    env = " ".join(f'"{key}={value}"' for key, value in proxy_env(paths, owner).items())
    kind = "notify" if proxy == "haproxy" else "simple"
    return (
        f"# Written by middock (edge:start); the edge of {owner.name}'s apps, from {paths.root}.\n"
        "[Unit]\n"
        f"Description=middock edge ({proxy}) for the apps of {owner.name}\n"
        "After=network-online.target docker.service\n"
        "Wants=network-online.target\n\n"
        "[Service]\n"
        f"Type={kind}\n"
        f"User={owner.name}\n"
        f"Group={owner.gid}\n"
        f"Environment={env}\n"
        f"ExecStartPre=/bin/mkdir -p -m 0700 {paths.run}\n"
        f"ExecStart={command}\n"
        + ("ExecReload=/bin/kill -USR2 $MAINPID\n" if proxy == "haproxy" else "")
        + "AmbientCapabilities=CAP_NET_BIND_SERVICE\n"
        "CapabilityBoundingSet=CAP_NET_BIND_SERVICE\n"
        "NoNewPrivileges=true\n"
        "Restart=always\n"
        "RestartSec=2\n"
        "LimitNOFILE=65536\n\n"
        "[Install]\n"
        "WantedBy=multi-user.target\n"
    )


def uses_systemd(owner: Owner) -> bool:
    """Units only where systemd runs and root manages another user's edge."""
    return Path("/run/systemd/system").is_dir() and os.geteuid() == 0 and owner.uid != 0


def pid_of(proxy: str, paths: EdgePaths) -> int | None:
    """The proxy's (master) process, if its pidfile names a live one of that program."""
    try:
        pid = int(paths.pidfile(proxy).read_text().split()[0])
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError, IndexError):
        return None
    return pid if cmdline and os.path.basename(cmdline[0].decode(errors="replace")) == proxy else None


def start(proxy: str, paths: EdgePaths, owner: Owner) -> None:
    if uses_systemd(owner):
        unit = UNIT_DIR / unit_name(proxy, owner)
        text = render_unit(proxy, paths, owner)
        if not unit.exists() or unit.read_text() != text:
            unit.write_text(text)
            systemctl("daemon-reload")
        systemctl("enable", "--now", unit.name)
        return
    if pid_of(proxy, paths):
        return
    log = open(paths.logs / f"{proxy}.log", "ab")
    child = subprocess.Popen(
        argv(proxy, paths),
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
        env=proxy_env(paths, owner),
        cwd=paths.root,
        start_new_session=True,
    )
    log.close()
    if proxy == "haproxy":
        code = child.wait(timeout=START_TIMEOUT)  # -D: returns once listening, or with the error
        if code != 0:
            raise MiddockError(f"HAProxy did not start: {last_line(paths.logs / 'haproxy.log')}")


def wait_started(proxy: str, paths: EdgePaths, answers) -> None:  # noqa: ANN001
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if answers():
            return
        time.sleep(0.1)
    raise MiddockError(f"{proxy} did not start within {START_TIMEOUT:g}s: {last_line(paths.logs / f'{proxy}.log')}")


def stop(proxy: str, paths: EdgePaths, owner: Owner) -> None:
    if uses_systemd(owner):
        if (UNIT_DIR / unit_name(proxy, owner)).exists():
            systemctl("disable", "--now", unit_name(proxy, owner))
        return
    pid = pid_of(proxy, paths)
    if pid is None:
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while pid_of(proxy, paths) == pid and time.monotonic() < deadline:
        time.sleep(0.1)
    if pid_of(proxy, paths) == pid:
        os.kill(pid, signal.SIGKILL)
    paths.pidfile(proxy).unlink(missing_ok=True)


def systemctl(*args: str) -> None:
    result = process.capture(["systemctl", *args])
    if result.returncode != 0:
        raise MiddockError(f"systemctl {' '.join(args)} failed: {(result.stderr.strip() or 'no message')[:200]}")


def last_line(path: Path) -> str:
    try:
        lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "no log"
    return lines[-1][:300] if lines else "no log"
