"""The server's deploy account, managed by root: SSH keys and their roles, refresh after an
upgrade, the SSH dispatcher every key runs, and the audit log of who did what."""

from __future__ import annotations

import argparse
import os
import pwd
import sys
from pathlib import Path

from ..edge.settings import dashboard_port
from ..errors import MiddockError
from ..server import account, keys, privileges, roles, rootless, ssh
from ..state import audit, cluster
from ..state.apps import check_name, middock_home
from .commands import NAMES, argument, command, emit_json, when


def read_key(file: str) -> str:
    if file == "-":
        return sys.stdin.read()
    try:
        return open(file).read()
    except (OSError, UnicodeDecodeError) as error:
        raise MiddockError(f"cannot read the key file {file}: {getattr(error, 'strerror', None) or error}") from None


def keys_file(user: pwd.struct_passwd) -> Path:
    """The user's keys file, this process ready to write it: root's file (account.py) as root;
    the user's own, of an install of before, as the user."""
    path = account.authorized_keys(user)
    if path != account.root_keys(user):
        privileges.become(user)
    elif os.geteuid() != 0:
        raise MiddockError(f"the keys of {user.pw_name} are root's ({path}): run this with sudo")
    return path


def tunnel_port(user: pwd.struct_passwd) -> int:
    """The port every key of the user may forward to: its dashboard's, read as the user."""
    return privileges.as_user(user, dashboard_port, privileges.home_of(user))


@command("keys:add", "authorize an SSH public key for pushes and commands (as root)", app=False, privileges="own")
@argument("name", help="who the key is: recorded as the pusher")
@argument("file", help="the .pub file, or - to read it from stdin")
@argument("--role", default=roles.ADMIN, help="read, deploy or admin (default: admin, everything a key can do)")
@argument("--apps", metavar="APP,APP", help="read and deploy: only these apps (default: every app)")
def cmd_keys_add(args: argparse.Namespace) -> int:
    user = privileges.target(args.user)
    # a file the admin named: read before the drop
    key = keys.parse_public_key(read_key(args.file), args.name, args.role, keys.parse_apps(args.apps))
    added = keys.add(keys_file(user), key, tunnel_port(user))
    state = "Authorized" if added else "Already authorized:"
    role = key.grant.describe()
    print(f"-----> {state} key {key.name} ({key.type} {key.fingerprint}) for {user.pw_name}, role {role}")
    return 0


@command("keys:set", "change a key's role and apps (as root)", app=False, privileges="own")
@argument("name")
@argument("--role", required=True, help="read, deploy or admin")
@argument("--apps", metavar="APP,APP", help="read and deploy: only these apps (default: every app)")
def cmd_keys_set(args: argparse.Namespace) -> int:
    user = privileges.target(args.user)
    role, apps = keys.check_grant(args.role, keys.parse_apps(args.apps))  # checked before the drop
    key = keys.set_grant(keys_file(user), args.name, role, apps, tunnel_port(user))
    print(f"-----> Key {key.name} of {user.pw_name} has role {key.grant.describe()}")
    return 0


@command("keys:list", "the authorized keys", app=False, json=True)
def cmd_keys_list(args: argparse.Namespace) -> int:
    user = privileges.target(args.user)
    found = keys.listed(account.authorized_keys(user))
    if args.json:
        return emit_json([key.as_dict() for key in found])
    if not found:
        print(f"no keys for {user.pw_name}; add one with: keys:add NAME FILE")
    for key in found:
        warning = ""
        if not key.name:
            warning = "   ! unrestricted (not added by middock): remove this line"
        elif not key.restricted:
            warning = "   ! not as middock writes it: `middock refresh` rewrites it restricted, or remove it"
        apps = ",".join(key.apps) if key.apps else "all apps"
        line = f"{key.name or '(no name)':<20} {key.role:<7} {apps:<20} {key.type:<12} {key.fingerprint}  {key.comment}"
        print(f"{line}{warning}")
    return 0


@command("keys:remove", "remove a key (as root)", app=False, privileges="own")
@argument("name")
def cmd_keys_remove(args: argparse.Namespace) -> int:
    user = privileges.target(args.user)
    keys.remove(keys_file(user), args.name, tunnel_port(user))
    print(f"-----> Removed key {args.name} of {user.pw_name}")
    return 0


@command(
    "refresh", "point apps' hooks and keys at this installation, give back root's files (install.sh)",
    app=False, privileges="own",
)  # fmt: skip
@argument("--root-keys", action="store_true", help="make root's keys file of the user from its own (install.sh)")
@argument("--rootless", action="store_true", help="move the user's apps from the root daemon to its own")
def cmd_refresh(args: argparse.Namespace) -> int:
    user = privileges.target(args.user)
    home = privileges.home_of(user)
    if privileges.dropping(user):
        reowned = account.reown(user, home)
        if reowned:
            print(f"-----> Gave {user.pw_name} back {reowned} file(s) of {home} that an earlier middock left to root")
    if args.root_keys and account.take_keys(user, tunnel_port(user)):
        print(f"-----> The keys of {user.pw_name} are now root's: {account.root_keys(user)}")
    if os.geteuid() == 0 or account.authorized_keys(user) != account.root_keys(user):
        keys.refresh(keys_file(user), tunnel_port(user))
    if args.rootless:
        move_to_own_docker(user, home)
    elif privileges.dropping(user):
        start_own_docker(user)
    privileges.become(user)
    refreshed = account.refresh(home)
    print(f"-----> Hooks of {len(refreshed)} app(s) and the keys of {user.pw_name} point at {sys.executable}")
    return 0


def start_own_docker(user: pwd.struct_passwd) -> None:
    """The user's own rootless daemon, unless it uses the root daemon (the docker group)."""
    if rootless.on_root_daemon(user.pw_name):
        print(
            f"-----> {user.pw_name} uses the root Docker daemon (the docker group), so its deploy keys are "
            "root-equivalent; see the README's 'A deploy key is not root'"
        )
        return
    rootless.start(user)
    print(f"-----> The own Docker daemon of {user.pw_name} (rootless) answers on {rootless.socket_path(user.pw_uid)}")


def move_to_own_docker(user: pwd.struct_passwd, home: Path) -> None:
    """As root: the user's own rootless daemon started, its apps moved there from the root daemon
    (migrate/to_rootless.py), then the user taken out of the `docker` group; a user with an app
    left behind stays in it, so that app keeps running where it is."""
    if not privileges.dropping(user):
        raise MiddockError("refresh --rootless moves a deploy user's apps: run it as root, with --user NAME")
    if not rootless.on_root_daemon(user.pw_name):
        start_own_docker(user)
        return
    if cluster.load(home) is not None:
        raise MiddockError(f"{user.pw_name} runs a Swarm, which needs the root daemon: nothing was moved")
    from ..migrate import to_rootless  # the whole deploy pipeline: only for this command

    rootless.start(user)
    print(f"-----> The own Docker daemon of {user.pw_name} (rootless) answers; moving its apps there")
    left = privileges.as_user(user, to_rootless.move_all, str(home))
    if left:
        raise MiddockError(
            f"{', '.join(left)} still run on the root daemon (said above), so {user.pw_name} stays in the docker "
            "group; the apps moved stay moved: run refresh --rootless again once it is mended"
        )
    rootless.leave_root_daemon(user)
    print(f"-----> {user.pw_name} left the docker group: its apps run on its own daemon, its deploy keys are not root")


@command("ssh-serve", "the forced command of every key (sshd runs it)", app=False)
@argument("--key", required=True)
@argument("--role", default=roles.ADMIN, choices=roles.ROLES)
@argument("--apps")
def cmd_ssh_serve(args: argparse.Namespace) -> int:
    from . import main  # the dispatcher runs the words it allows as this very command

    grant = roles.Grant(keys.check_name(args.key), *keys.check_grant(args.role, keys.parse_apps(args.apps)))
    named = [key for key in keys.listed(account.authorized_keys(privileges.target(None))) if key.name == grant.key]
    fingerprint = named[0].fingerprint if named else ""
    return ssh.serve(grant, fingerprint, NAMES, lambda argv: main(argv, grant))


@command("audit", "who changed what: the audit log's last lines (of APP)", app=False, json=True)
@argument("app", nargs="?")
@argument("-n", type=int, default=20, metavar="N", help="how many lines (default 20)")
def cmd_audit(args: argparse.Namespace) -> int:
    app = check_name(args.app) if args.app is not None else None  # a destroyed app's lines too
    found = audit.read(middock_home(), app, args.n)
    if args.json:
        return emit_json([vars(line) for line in found])
    if not found:
        print("nothing recorded yet" + (f" for {args.app}" if args.app else ""))
    for line in found:
        who = f"{line.actor} ({line.fingerprint})" if line.fingerprint else line.actor
        print(f"{when(line.time)}  {who}  {line.command}  {line.app or '-'}  {line.result}")
    return 0
