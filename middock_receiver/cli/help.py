"""What middock says about itself: `help`, the commands and what each does, the same locally
and over SSH (where the commands that run only on the server are left out; `help COMMAND` is
that command's `--help`), and `version`."""

from __future__ import annotations

import argparse

from ..errors import MiddockError
from ..server.ssh import LOCAL_ONLY
from .commands import argument, command, load_all, parser
from .version import version_line

HIDDEN = frozenset({"help", "ssh-serve"})


def listing(over_ssh: bool) -> str:
    commands = load_all()
    names = sorted(name for name in commands if name not in HIDDEN and not (over_ssh and name in LOCAL_ONLY))
    width = max(len(name) for name in names)
    lines = [f"  {name:<{width}}  {commands[name].help}" for name in names]
    if over_ssh:
        usage = "usage: ssh USER@HOST COMMAND [ARGS…]   (ssh USER@HOST help COMMAND shows its options)"
        git = "git: git push / fetch / clone USER@HOST:APP.git"
    else:
        usage = "usage: middock COMMAND [ARGS…]   (middock help COMMAND shows its options)"
        git = "as root, a command acts as the deploy user (--user NAME, default deploy)"
    return "\n".join([usage, "commands:", *lines, git]) + "\n"


@command("help", "the commands; help COMMAND: its options", app=False, privileges="none")
@argument("word", nargs="?", metavar="COMMAND")
@argument("--over-ssh", action="store_true", help=argparse.SUPPRESS)
def cmd_help(args: argparse.Namespace) -> int:
    if args.word is None:
        print(listing(args.over_ssh), end="")
        return 0
    if args.word not in load_all() or args.word in HIDDEN or (args.over_ssh and args.word in LOCAL_ONLY):
        raise MiddockError(f"no command {args.word!r}; `help` lists them")
    parser().parse_args([args.word, "--help"])  # prints the command's options and exits 0
    return 0


@command("version", "which middock this is (over SSH: the server's)", app=False, privileges="none")
def cmd_version(args: argparse.Namespace) -> int:
    print(version_line())
    return 0
