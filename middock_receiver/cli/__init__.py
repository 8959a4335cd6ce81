"""The `middock` command: the same words locally and as `ssh deploy@host WORD …`.

Each module here holds one group of commands, registered with `@command` and `@argument`
(commands.py); `main` imports the module of the command asked for, parses the words, checks
them against an SSH key's role (server/roles.py), runs the command, turning a MiddockError into
one line on stderr and a non-zero exit, and records a command that changes something in the
audit log (state/audit.py).
"""

from __future__ import annotations

import argparse
import pwd
import sys
from collections.abc import Sequence

from ..errors import MiddockError, one_line, os_error_line
from ..server import privileges, roles, rootless
from ..state import audit
from ..state.apps import APP_NAME, App, middock_home
from .commands import COMMANDS, load, load_all, parser, text_words

__all__ = ["load_all", "main"]


def named_apps(args: argparse.Namespace) -> tuple[str, ...]:
    """The app a command's words name and, for a preview, its parent (a key holding either may)."""
    name = getattr(args, "app", None)
    if not name or not APP_NAME.match(name):
        return (name,) if name else ()
    parent = App(name, middock_home()).parent
    return (name, parent) if parent else (name,)


def check_role(grant: roles.Grant, args: argparse.Namespace) -> None:
    refused = roles.refusal(grant, args.command, named_apps(args), getattr(args, "reveal", False))
    if refused:
        raise MiddockError(refused)


def record(user: pwd.struct_passwd, args: argparse.Namespace, who: tuple[str, str], result: str) -> None:
    """The audit line of a command that changed something, written as the deploy user."""
    try:
        line = audit.entry(args.command, getattr(args, "app", None), result, who)
        privileges.as_user(user, audit.append, privileges.home_of(user), line)
    except (MiddockError, OSError) as error:
        sys.stderr.write(f" !     the audit log was not written: {one_line(str(error))}\n")


def main(argv: Sequence[str] | None = None, grant: roles.Grant | None = None) -> int:
    """Run a command; `grant`: the SSH key it came from (its role decides), None locally."""
    sys.stdout.reconfigure(line_buffering=True)  # our lines before a deploy's streamed output
    audited: tuple[pwd.struct_passwd, argparse.Namespace, tuple[str, str]] | None = None  # whose log, what, who
    try:
        words = text_words(sys.argv[1:] if argv is None else argv)
        load(words)
        args = parser().parse_args(words)
        command = COMMANDS[args.command]
        if grant is not None:
            check_role(grant, args)
        args.grant = grant
        changes = roles.changes(args.command)
        user = privileges.target(args.user) if changes or command.privileges == "user" else None
        audited = (user, args, audit.actor()) if user and changes else None  # who: before becoming the user
        if user and command.privileges == "user":
            privileges.become(user)
        rootless.use_own_daemon()
        code = command.run(args)
        if audited:
            record(*audited, "ok" if code == 0 else f"failed: exit {code}")
        return code
    except MiddockError as error:
        sys.stderr.write(f" !     {one_line(str(error))}\n")
        if audited:
            record(*audited, f"failed: {one_line(str(error))}")
        return 1
    except BrokenPipeError:
        return 1
    except OSError as error:
        sys.stderr.write(f" !     {one_line(os_error_line(error))}; nothing was changed\n")
        if audited:
            record(*audited, f"failed: {one_line(os_error_line(error))}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
