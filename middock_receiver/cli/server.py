"""The server's deploy account, managed by root: SSH keys, refresh after an upgrade, and the
SSH dispatcher every key runs."""

from __future__ import annotations

import argparse
import sys

from ..errors import MiddockError
from ..server import account, keys, privileges, ssh
from .commands import COMMANDS, argument, command, emit_json


def read_key(file: str) -> str:
    if file == "-":
        return sys.stdin.read()
    try:
        return open(file).read()
    except (OSError, UnicodeDecodeError) as error:
        raise MiddockError(f"cannot read the key file {file}: {getattr(error, 'strerror', None) or error}") from None


@command("keys:add", "authorize an SSH public key for pushes and commands (as root)", app=False, privileges="own")
@argument("name", help="who the key is: recorded as the pusher")
@argument("file", help="the .pub file, or - to read it from stdin")
def cmd_keys_add(args: argparse.Namespace) -> int:
    user = privileges.target(args.user)
    key = keys.parse_public_key(read_key(args.file), args.name)  # a file the admin named: read before the drop
    privileges.become(user)
    added = keys.add(account.authorized_keys(user), key)
    state = "Authorized" if added else "Already authorized:"
    print(f"-----> {state} key {key.name} ({key.type} {key.fingerprint}) for {user.pw_name}")
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
        print(f"{key.name or '(no name)':<20} {key.type:<20} {key.fingerprint}  {key.comment}{warning}")
    return 0


@command("keys:remove", "remove a key", app=False)
@argument("name")
def cmd_keys_remove(args: argparse.Namespace) -> int:
    user = privileges.target(args.user)
    keys.remove(account.authorized_keys(user), args.name)
    print(f"-----> Removed key {args.name} of {user.pw_name}")
    return 0


@command(
    "refresh", "point apps' hooks and keys at this installation, give back root's files (install.sh)",
    app=False, privileges="own",
)  # fmt: skip
def cmd_refresh(args: argparse.Namespace) -> int:
    user = privileges.target(args.user)
    home = privileges.home_of(user)
    if privileges.dropping(user):
        reowned = account.reown(user, home)
        if reowned:
            print(f"-----> Gave {user.pw_name} back {reowned} file(s) of {home} that an earlier middock left to root")
    privileges.become(user)
    refreshed = account.refresh(user, home)
    print(f"-----> Hooks of {len(refreshed)} app(s) and the keys of {user.pw_name} point at {sys.executable}")
    return 0


@command("ssh-serve", "the forced command of every key (sshd runs it)", app=False)
@argument("--key", required=True)
def cmd_ssh_serve(args: argparse.Namespace) -> int:
    from . import main  # the dispatcher runs the words it allows as this very command

    return ssh.serve(args.key, COMMANDS, main)
