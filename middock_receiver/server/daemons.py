"""Programs middock keeps running for the deploy user: the edge's proxies, the Swarm registry.

Where the server runs systemd and root asks, each is a unit of middock's own
(`/etc/systemd/system/middock-*.service`, which package upgrades never touch), enabled so it
comes back after a reboot, running as the deploy user with only the right to bind low ports.
Elsewhere (a container, the test suite) each is a background process of the deploy user,
started by middock running as that user (root first becomes it: server/privileges.py).
"""

from __future__ import annotations

import os
import pwd
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .. import process
from ..errors import MiddockError

UNIT_DIR = Path("/etc/systemd/system")
START_TIMEOUT = 15.0


@dataclass(frozen=True)
class Owner:
    """The deploy user a program runs as."""

    name: str
    uid: int
    gid: int
    home: Path

    @classmethod
    def of(cls, user: pwd.struct_passwd) -> Owner:
        return cls(user.pw_name, user.pw_uid, user.pw_gid, Path(user.pw_dir))


@dataclass(frozen=True)
class Daemon:
    """One program: how it runs in the background, and how under systemd (in the foreground)."""

    name: str  # haproxy, caddy, registry: its pidfile's and log's name too
    background: list[str]
    foreground: list[str]
    folder: Path  # its working folder, with `NAME.pid`
    log: Path
    env: dict[str, str] = field(default_factory=dict)
    forks: bool = False  # the background command returns once the program listens (HAProxy's -D)
    notify: bool = False  # under systemd: Type=notify
    reload_signal: str = ""  # under systemd: ExecReload sends it
    prepare: str = ""  # under systemd: a folder to create before the start (its sockets')
    user_namespace: bool = False  # it maps ids with the setuid newuidmap (rootless Docker): no capability bound

    @property
    def pidfile(self) -> Path:
        return self.folder / f"{self.name}.pid"


# A proxy may bind ports below 1024 and nothing more of root's.
LOW_PORTS_ONLY = (
    "AmbientCapabilities=CAP_NET_BIND_SERVICE\nCapabilityBoundingSet=CAP_NET_BIND_SERVICE\nNoNewPrivileges=true\n"
)
# rootlesskit needs the setuid newuidmap and newgidmap to map the user's subordinate ids, and
# systemd to leave the processes of its namespace (the containers) in its cgroup until they end.
NAMESPACES = "Delegate=yes\nKillMode=mixed\nTasksMax=infinity\nTimeoutStopSec=60\n"


def unit_name(daemon: Daemon, owner: Owner) -> str:
    return f"middock-{daemon.name}-{owner.name}.service"


def render_unit(daemon: Daemon, owner: Owner) -> str:
    env = " ".join(f'"{key}={value}"' for key, value in daemon.env.items())
    return (
        f"# Written by middock for the apps of {owner.name}; middock rewrites it.\n"
        "[Unit]\n"
        f"Description=middock {daemon.name} for the apps of {owner.name}\n"
        "After=network-online.target docker.service\n"
        "Wants=network-online.target\n\n"
        "[Service]\n"
        f"Type={'notify' if daemon.notify else 'simple'}\n"
        f"User={owner.name}\n"
        f"Group={owner.gid}\n"
        + (f"Environment={env}\n" if env else "")
        + f"WorkingDirectory={daemon.folder}\n"
        # install -d fails on a folder another user made first (it may not chmod it), where mkdir -p would use it
        + (f"ExecStartPre=/usr/bin/install -d -m 0700 {daemon.prepare}\n" if daemon.prepare else "")
        + f"ExecStart={' '.join(daemon.foreground)}\n"
        + (f"ExecReload=/bin/kill -{daemon.reload_signal} $MAINPID\n" if daemon.reload_signal else "")
        + (NAMESPACES if daemon.user_namespace else LOW_PORTS_ONLY)
        + "Restart=always\n"
        "RestartSec=2\n"
        "LimitNOFILE=65536\n\n"
        "[Install]\n"
        "WantedBy=multi-user.target\n"
    )


def uses_systemd(owner: Owner) -> bool:
    """Units only where systemd runs and root manages another user's programs."""
    return Path("/run/systemd/system").is_dir() and os.geteuid() == 0 and owner.uid != 0


def supervised(daemon: Daemon, owner: Owner) -> bool:
    """Whether systemd runs it (its unit is active), so that it comes back by itself when it exits."""
    if not Path("/run/systemd/system").is_dir() or not (UNIT_DIR / unit_name(daemon, owner)).exists():
        return False
    return process.capture(["systemctl", "is-active", "--quiet", unit_name(daemon, owner)]).returncode == 0


def wait_stopped(daemon: Daemon, pid: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while pid_of(daemon) == pid and time.monotonic() < deadline:
        time.sleep(0.05)


def pid_of(daemon: Daemon) -> int | None:
    """The program's (main) process, if its pidfile names a live one of that program."""
    try:
        pid = int(daemon.pidfile.read_text().split()[0])
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError, IndexError):
        return None
    program = os.path.basename(daemon.background[0])
    return pid if cmdline and os.path.basename(cmdline[0].decode(errors="replace")) == program else None


def start(daemon: Daemon, owner: Owner) -> None:
    """Start it unless it runs (a unit: enable it, so it comes back after a reboot)."""
    if not os.access(daemon.background[0], os.X_OK):
        raise MiddockError(f"{daemon.background[0]} is missing: install its package (install.sh does)")
    if uses_systemd(owner):
        unit = UNIT_DIR / unit_name(daemon, owner)
        text = render_unit(daemon, owner)
        if not unit.exists() or unit.read_text() != text:
            unit.write_text(text)
            systemctl("daemon-reload")
        systemctl("enable", "--now", unit.name)
        return
    if pid_of(daemon):
        return
    log = open(daemon.log, "ab")
    child = subprocess.Popen(
        daemon.background,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", **daemon.env},
        cwd=daemon.folder,
        start_new_session=True,
    )
    log.close()
    if daemon.forks and child.wait(timeout=START_TIMEOUT) != 0:
        raise MiddockError(f"{daemon.name} did not start: {last_line(daemon.log)}")
    if not daemon.forks:
        write_pid(daemon, child.pid)


def write_pid(daemon: Daemon, pid: int) -> None:
    """The pidfile, replaced whole: the program may be writing its own already (Caddy's --pidfile)."""
    fresh = daemon.pidfile.with_name(f".{daemon.pidfile.name}.{os.getpid()}")
    fresh.unlink(missing_ok=True)
    fd = os.open(fresh, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "w") as f:
        f.write(f"{pid}\n")
    os.replace(fresh, daemon.pidfile)


def wait_started(daemon: Daemon, answers: Callable[[], bool], timeout: float = START_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if answers():
            return
        time.sleep(0.1)
    raise MiddockError(f"{daemon.name} did not start within {timeout:g}s: {last_line(daemon.log)}")


def stop(daemon: Daemon, owner: Owner, timeout: float = 10.0) -> None:
    if uses_systemd(owner):
        if (UNIT_DIR / unit_name(daemon, owner)).exists():
            systemctl("disable", "--now", unit_name(daemon, owner))
        return
    pid = pid_of(daemon)
    if pid is None:
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while pid_of(daemon) == pid and time.monotonic() < deadline:
        time.sleep(0.1)
    if pid_of(daemon) == pid:
        os.kill(pid, signal.SIGKILL)
    daemon.pidfile.unlink(missing_ok=True)


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
