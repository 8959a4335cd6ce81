"""The dashboard (dashboard/): a one-time link to it, serving it, its systemd units, and ending
every session."""

from __future__ import annotations

import argparse
import os
import pwd
import socket
import subprocess
import sys
import time

from ..dashboard import sessions, units
from ..edge.settings import EdgePaths, dashboard_port, read_settings
from ..errors import MiddockError
from ..server import account, daemons, keys, privileges
from ..settings import env_value
from ..state.apps import middock_home
from .commands import argument, command

START_TIMEOUT = 15.0


def answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def start_detached(port: int) -> None:
    """Start `dashboard:serve` in a session of its own (no systemd here), and wait until it answers."""
    folder = sessions.folder(middock_home())
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    with open(folder / "dashboard.log", "ab") as log:
        subprocess.Popen(
            [sys.executable, "-I", "-m", "middock_receiver", "dashboard:serve"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
            env={**os.environ, "MIDDOCK_HOME": str(middock_home())},
        )
    deadline = time.monotonic() + START_TIMEOUT
    while not answers(port):
        if time.monotonic() > deadline:
            raise MiddockError(f"the dashboard did not start; see {folder / 'dashboard.log'}")
        time.sleep(0.1)


def server_address() -> str:
    """The address the SSH client reached this server at, else its name."""
    connection = os.environ.get("SSH_CONNECTION", "").split()
    return connection[2] if len(connection) == 4 else socket.getfqdn()


@command("dashboard", "a one-time link to the dashboard (valid 2 minutes), and how to reach it", app=False)
def cmd_dashboard(args: argparse.Namespace) -> int:
    home = middock_home()
    settings = read_settings(EdgePaths(home))
    port = settings.dashboard_port
    owner = daemons.Owner.of(pwd.getpwuid(os.getuid()))
    if not units.listening(owner) and not answers(port):  # no systemd here: it runs while someone looks
        start_detached(port)
    token = sessions.issue_link(home, args.grant.key if args.grant else sessions.LOCAL)
    user = os.environ.get("USER") or privileges.target(None).pw_name
    print(f"-----> Open within {sessions.LINK_SECONDS // 60} minutes (the link works once):")
    if settings.dashboard:
        suffix = "" if settings.https_port == 443 else f":{settings.https_port}"
        print(f"       https://{settings.dashboard}{suffix}/login/{token}")
        print("       or, through an SSH tunnel:")
    print(f"       http://127.0.0.1:{port}/login/{token}")
    print(f"       the tunnel: ssh -N -L {port}:127.0.0.1:{port} {user}@{server_address()}")
    return 0


@command("dashboard:serve", "serve the dashboard until idle (systemd starts it; so does `dashboard`)", app=False)
@argument("--idle", type=float, default=None, metavar="SECONDS", help="exit after this long unused")
def cmd_dashboard_serve(args: argparse.Namespace) -> int:
    from ..dashboard.serve import serve

    if args.idle is not None and not args.idle > 0:
        raise MiddockError("--idle takes a number of seconds above 0")
    home = middock_home()
    idle = args.idle if args.idle is not None else env_value(os.environ, "MIDDOCK_DASHBOARD_IDLE")
    serve(home, read_settings(EdgePaths(home)).dashboard_port, idle)
    return 0


@command(
    "dashboard:install", "listen for the dashboard under systemd, keys may tunnel to it (as root)",
    app=False, privileges="own",
)  # fmt: skip
def cmd_dashboard_install(args: argparse.Namespace) -> int:
    user = privileges.target(args.user)
    port = privileges.as_user(user, dashboard_port, privileges.home_of(user))
    keys.refresh(account.root_keys(user), port)  # root's file alone lets a key forward a port
    if units.install(daemons.Owner.of(user), port):
        print(f"-----> The dashboard of {user.pw_name} listens on 127.0.0.1:{port} (systemd starts it when asked)")
    else:
        print(f"-----> No systemd here: `middock dashboard` starts the dashboard of {user.pw_name} when asked")
    return 0


@command("dashboard:logout-all", "end every dashboard session and unused link", app=False)
def cmd_dashboard_logout_all(args: argparse.Namespace) -> int:
    sessions.logout_all(middock_home())
    print("-----> Every dashboard session has ended; `dashboard` gives a new link")
    return 0
