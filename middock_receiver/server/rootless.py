"""The deploy user's own Docker daemon: Docker's rootless mode, so that a deploy key is not root.

A deploy user in the `docker` group is root on the server: any build script it pushes can run
`docker run --privileged -v /:/host`. In rootless mode the user runs a `dockerd` of its own inside
a user namespace (rootlesskit, slirp4netns, the setuid newuidmap), whose "root" is the user's
subordinate ids (/etc/subuid), so a container can never act as the host's root. Its socket is
`/run/middock/UID/docker.sock` (the user's folder that only root makes, server/machine.py), and
middock points every program it starts at it (`use_own_daemon`: `DOCKER_HOST`, set by middock,
never by an app). Where systemd runs it is the unit `middock-dockerd-USER.service` (User=USER,
enabled, so the daemon and the apps' containers come back after a reboot); elsewhere (a
container, the test suite) a background process of the user.

What rootless mode cannot do, Docker documents: no overlay networks (so no Swarm), no AppArmor,
no resource limits on cgroup v1, no ports below 1024 (the apps publish high ports on 127.0.0.1;
the edge binds 80 and 443 itself).
"""

from __future__ import annotations

import grp
import os
import pwd
import socket
from pathlib import Path

from .. import process
from ..errors import MiddockError
from . import daemons, machine
from .daemons import Daemon, Owner
from .privileges import as_user

ROOTLESSKIT = "/usr/bin/rootlesskit"
DOCKERD_ROOTLESS = "/usr/share/docker.io/contrib/dockerd-rootless.sh"  # docker.io's; it runs dockerd in the namespace
NEEDS = {ROOTLESSKIT: "rootlesskit", "/usr/bin/slirp4netns": "slirp4netns", "/usr/bin/newuidmap": "uidmap"}
TUN = "/dev/net/tun"
START_TIMEOUT = 60.0  # a first start makes its data root; a busy machine takes a while


def socket_path(uid: int) -> Path:
    return machine.RUN / str(uid) / "docker.sock"


def use_own_daemon() -> None:
    """Point this process, and every program it starts, at the user's own daemon when it has one;
    root keeps the root daemon. A `DOCKER_HOST` from anywhere else is never used."""
    if os.geteuid() == 0:
        return
    own = socket_path(os.geteuid())
    if own.exists():
        os.environ["DOCKER_HOST"] = f"unix://{own}"
    else:
        os.environ.pop("DOCKER_HOST", None)


def in_use() -> bool:
    """Whether this process talks to the user's own daemon (use_own_daemon chose it)."""
    return os.geteuid() != 0 and os.environ.get("DOCKER_HOST") == f"unix://{socket_path(os.geteuid())}"


def host_address() -> str | None:
    """The host's own IPv4 address on its network (the default route's source), or None without
    one. The daemon's bridge lives in its namespace, so `host.docker.internal` stands for this
    address in the user's containers (dockerd's --host-gateway-ip), and slirp4netns connects to
    it from the host itself: a service on the host sees the apps come from this same address.
    The host's loopback stays closed to them (Docker's default, --disable-host-loopback)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("203.0.113.1", 9))  # a documentation address: UDP's connect sends nothing
        except OSError:
            return None
        return probe.getsockname()[0]


def rootlesskit_command(owner: Owner) -> list[str]:
    """dockerd-rootless.sh's own choices (slirp4netns, the builtin port driver, copy-up of /etc
    and /run), with rootlesskit's state in the user's folder; the script, started as its own
    child (`_DOCKERD_ROOTLESS_CHILD`), only runs dockerd, with the arguments after it."""
    address = host_address()
    return [
        ROOTLESSKIT,
        "--net=slirp4netns",
        "--mtu=65520",
        "--slirp4netns-sandbox=auto",
        "--slirp4netns-seccomp=auto",
        "--disable-host-loopback",
        "--port-driver=builtin",
        "--copy-up=/etc",
        "--copy-up=/run",
        "--propagation=rslave",
        f"--state-dir={machine.RUN / str(owner.uid) / 'rootlesskit'}",
        DOCKERD_ROOTLESS,
        *([f"--host-gateway-ip={address}"] if address else []),
    ]


def daemon(owner: Owner) -> Daemon:
    """The user's dockerd as a program middock keeps running (its data: ~/.local/share/docker)."""
    folder = owner.home / ".middock" / "_docker"
    env = {
        "HOME": str(owner.home),
        "XDG_RUNTIME_DIR": str(machine.RUN / str(owner.uid)),
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",  # the script runs dockerd by name
        "_DOCKERD_ROOTLESS_CHILD": "1",
    }
    command = rootlesskit_command(owner)
    return Daemon(
        name="dockerd",
        background=command,
        foreground=command,
        folder=folder,
        log=folder / "dockerd.log",
        env=env,
        user_namespace=True,
    )


def missing_programs() -> list[str]:
    return sorted({package for path, package in NEEDS.items() if not os.access(path, os.X_OK)})


def subordinate_ids(name: str) -> bool:
    """Whether the user has subordinate uids and gids (useradd gives them on Debian 12)."""
    for table in ("/etc/subuid", "/etc/subgid"):
        try:
            lines = Path(table).read_text().splitlines()
        except OSError:
            return False
        if not any(line.split(":")[0] == name for line in lines):
            return False
    return True


def answers(uid: int) -> bool:
    """Whether the daemon answers Docker's ping on the user's socket."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.settimeout(2)
            client.connect(str(socket_path(uid)))
            client.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            return client.recv(4096).split(b"\r\n", 1)[0].split(b" ")[1:2] == [b"200"]
    except (OSError, IndexError):
        return False


def check_ready(owner: Owner) -> None:
    """What the daemon needs from root before it can start, as one line."""
    missing = missing_programs()
    if missing or not os.access(DOCKERD_ROOTLESS, os.X_OK):
        needed = " ".join(missing or ["docker.io"])
        raise MiddockError(f"Docker's rootless mode needs the packages {needed}: install.sh installs them")
    try:
        tun_mode = os.stat(TUN).st_mode
    except OSError:
        raise MiddockError(f"{TUN} is missing, and rootless Docker's network (slirp4netns) needs it") from None
    if tun_mode & 0o006 != 0o006:
        raise MiddockError(
            f"{TUN} is not open to every account, as udev makes it on a Debian server, and rootless Docker's "
            f"network (slirp4netns) opens it as the deploy user: chmod 0666 {TUN}"
        )
    if not subordinate_ids(owner.name):
        raise MiddockError(
            f"{owner.name} has no subordinate ids in /etc/subuid and /etc/subgid, which rootless Docker "
            f"needs: as root, usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {owner.name}"
        )


def start(user: pwd.struct_passwd) -> None:
    """As root: start the user's daemon unless it runs (a unit, enabled, where systemd runs),
    and wait until it answers."""
    owner = Owner.of(user)
    check_ready(owner)
    machine.user_folder(owner.uid, owner.gid)  # its XDG_RUNTIME_DIR
    spec = daemon(owner)
    as_user(user, make_folder, str(spec.folder))
    if daemons.uses_systemd(owner):
        daemons.start(spec, owner)
    else:
        as_user(user, daemons.start, spec, owner)
    daemons.wait_started(spec, lambda: answers(owner.uid), timeout=START_TIMEOUT)


def stop(user: pwd.struct_passwd) -> None:
    """As root: stop the user's daemon (it stops the apps' containers first)."""
    owner = Owner.of(user)
    daemons.stop(daemon(owner), owner, timeout=START_TIMEOUT)


def make_folder(path: str) -> None:
    Path(path).mkdir(parents=True, exist_ok=True)


def on_root_daemon(name: str) -> bool:
    """Whether the user is in the `docker` group, so uses the root daemon (root-equivalent): an
    install from before rootless mode that kept it, or a Swarm manager by the admin's choice."""
    try:
        return name in grp.getgrnam("docker").gr_mem
    except KeyError:
        return False


def join_root_daemon(user: pwd.struct_passwd, app_names: list[str]) -> None:
    """As root, by the admin's explicit choice (a Swarm manager needs the root daemon): the user's
    own daemon stopped for good and the user put in the `docker` group. Refused while apps run on
    the user's own daemon (middock cannot move them)."""
    if app_names:
        raise MiddockError(
            f"the apps {', '.join(app_names)} of {user.pw_name} run on its own rootless Docker daemon, which a "
            "Swarm cannot use, and middock cannot move them: make a Swarm manager before the first app"
        )
    stop(user)
    socket_path(user.pw_uid).unlink(missing_ok=True)
    change_docker_group(["usermod", "-aG", "docker", user.pw_name], f"add {user.pw_name} to")


def leave_root_daemon(user: pwd.struct_passwd) -> None:
    """As root, once the user's apps run on its own daemon: the user out of the `docker` group."""
    change_docker_group(["gpasswd", "--delete", user.pw_name, "docker"], f"take {user.pw_name} out of")


def change_docker_group(argv: list[str], what: str) -> None:
    """Run usermod or gpasswd on the `docker` group; its refusal as one line."""
    result = process.capture(argv)
    if result.returncode != 0:
        raise MiddockError(f"{argv[0]} could not {what} the docker group: {result.stderr.strip()[:200]}")
