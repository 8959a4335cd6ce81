"""The forced command of every deploy key (keys.py): what an SSH client may run.

Whatever the client asks for, sshd runs `… ssh-serve --key NAME` and puts the request in
SSH_ORIGINAL_COMMAND. The request is split into words the way a shell would (shlex), and never
given to one. It may be git's pack program for an app's repository (push, fetch, clone), or a
middock command; anything else is refused with one line and nothing runs. What the key's role
allows (roles.py) is checked here for git, and by the command line (cli/) for a command, once
its words are parsed.
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Callable, Collection, Sequence
from pathlib import Path

from ..errors import MiddockError, quoted
from ..state.apps import APP_NAME, App, middock_home
from . import keys, roles

GIT_PROGRAMS = {"git-receive-pack": "receive-pack", "git-upload-pack": "upload-pack"}
GIT_ROLES = {"git-receive-pack": roles.GIT_PUSH, "git-upload-pack": roles.GIT_FETCH}
LOCAL_ONLY = frozenset(
    {
        *("keys:add", "keys:list", "keys:set", "keys:remove", "refresh", "ssh-serve"),
        *("edge", "edge:start", "edge:stop", "edge:set", "dashboard:serve", "dashboard:install"),
        *("swarm:init", "nodes:join-script", "nodes:drain", "nodes:activate", "nodes:remove"),
    }
)
HELP_WORDS = frozenset({"help", "--help", "-h"})


def repo_app(path: str, home: Path) -> str:
    """The app a git client means: clients send `myapp.git`, `/myapp.git`, `~/myapp.git`, `myapp`
    (or the repo's full path); nothing else names an app."""
    name = path
    for prefix in (f"{home}/", "~/", "/"):
        if name.startswith(prefix):
            name = name[len(prefix) :]
            break
    name = name.removesuffix("/").removesuffix(".git")
    if not APP_NAME.match(name):
        raise MiddockError(f"refused: {quoted(path)} is not an app's repository (use APP.git)")
    return name


def route(request: str | None, home: Path, commands: Collection[str], grant: roles.Grant) -> list[str]:
    """The argument list to run for an SSH request: `git …`, `help`, or a middock command's words.

    Raises MiddockError (a refusal) for anything else: a shell, another program, a path outside
    the apps, an unknown app, a command that is root's (keys, refresh) or the dispatcher itself.
    """
    if not request or not request.strip():
        raise MiddockError("refused: this account has no shell; run: ssh USER@HOST help")
    try:
        words = shlex.split(request)
    except ValueError:
        raise MiddockError("refused: the command cannot be parsed (unbalanced quotes)") from None
    program = words[0]
    if program in GIT_PROGRAMS:
        if len(words) != 2:
            raise MiddockError(f"refused: {program} takes exactly one repository path")
        app = App(repo_app(words[1], home), home).require()
        if app.parent:
            raise MiddockError(f"refused: {app.name} is a preview of {app.parent}; push its branch to {app.parent}.git")
        refused = roles.refusal(grant, GIT_ROLES[program], (app.name,))
        if refused:
            raise MiddockError(refused)
        return ["git", GIT_PROGRAMS[program], str(app.repo)]
    if program in HELP_WORDS:
        return ["help", "--over-ssh", *words[1:2]]
    if program in LOCAL_ONLY:
        raise MiddockError(f"refused: {program} runs only on the server itself")
    if program in commands:
        return words
    raise MiddockError(f"refused: {quoted(program)} is not a middock command; run: ssh USER@HOST help")


def serve(grant: roles.Grant, fingerprint: str, commands: Collection[str], run: Callable[[Sequence[str]], int]) -> int:
    """Serve one SSH session of the key `grant` names: it is recorded as the pusher of what this
    session deploys, and in the audit log with its fingerprint."""
    os.environ["MIDDOCK_PUSHER"] = keys.check_name(grant.key)
    os.environ["MIDDOCK_KEY_FINGERPRINT"] = fingerprint
    argv = route(os.environ.get("SSH_ORIGINAL_COMMAND"), middock_home(), commands, grant)
    if argv[0] == "git":
        sys.stdout.flush()
        os.execvp("git", argv)
    # Over SSH stdout is a pipe: flush each line, so a command's own lines and the deploy
    # output it follows (written straight to the binary buffer) arrive in order.
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[attr-defined]
    return run(argv)
