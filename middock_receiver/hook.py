"""The git hooks' entry point: which ref updates deploy, then hand them to the worker."""

from __future__ import annotations

import getpass
import os
import sys
from pathlib import Path

from .apps import App, read_settings
from .errors import MiddockError
from .lock import Request
from .output import Output
from .refs import parse_updates, verdict
from .worker import submit


def pusher() -> str:
    """Who pushed: the SSH key's name set by the forced command, else the local user."""
    return os.environ.get("MIDDOCK_PUSHER") or f"{getpass.getuser()} (local)"


def post_receive(repo: Path, stdin: str) -> int:
    app = App(repo.name.removesuffix(".git"), repo.parent)
    say = Output(sys.stdout.buffer)
    branch = read_settings(app)["branch"]
    code = 0
    for update in parse_updates(stdin):
        reason = verdict(update, branch)
        if reason:
            say.step(reason)
            continue
        try:
            code = submit(app, Request(commit=update.new, ref=update.ref, pusher=pusher()))
        except MiddockError as error:
            say.error(str(error))
            code = 1
    return code


def main(argv: list[str]) -> int:
    repo = Path(os.environ.get("GIT_DIR", ".")).resolve()
    if argv[:1] == ["post-receive"]:
        return post_receive(repo, sys.stdin.read())
    print(f" !     unknown hook {argv[:1]}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
