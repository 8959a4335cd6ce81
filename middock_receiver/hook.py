"""The git hooks' entry point: which ref updates deploy, then hand them to the worker."""

from __future__ import annotations

import getpass
import os
import pwd
import sys
from pathlib import Path

from .errors import MiddockError, os_error_line
from .follow import submit
from .output import Output
from .pipeline import gate
from .pipeline.refs import RefUpdate, parse_updates, verdict
from .server import privileges
from .state.apps import App, read_settings
from .state.lock import Request


def pusher() -> str:
    """Who pushed: the SSH key's name set by the forced command, else the local user."""
    return os.environ.get("MIDDOCK_PUSHER") or f"{getpass.getuser()} (local)"


def deploy_push(app: App, update: RefUpdate, gated: bool) -> int:
    """Deploy one pushed ref; in gate mode before git moves it (see gate.py)."""
    request = Request(commit=update.new, ref=update.ref, pusher=pusher())
    if gated:
        gate.hold_push(app, request, update.old)
    try:
        return submit(app, request)
    except (MiddockError, OSError):
        gate.discard(app, request)
        raise


def receive(repo: Path, stdin: str, gated: bool) -> int:
    """Both hooks: post-receive deploys after the refs moved; pre-receive (gate mode) before,
    and its non-zero exit makes git reject the whole push."""
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
            code = deploy_push(app, update, gated)
        except MiddockError as error:
            say.error(str(error))
            code = 1
        except OSError as error:
            say.error(f"{os_error_line(error)}; nothing was deployed")
            code = 1
    return code


def main(argv: list[str]) -> int:
    repo = Path(os.environ.get("GIT_DIR", ".")).resolve()
    # root pushing straight into the deploy user's repository: the deploy runs as that user
    privileges.become(pwd.getpwuid(repo.stat().st_uid))
    if argv[:1] in (["post-receive"], ["pre-receive"]):
        return receive(repo, sys.stdin.read(), gated=argv[0] == "pre-receive")
    print(f" !     unknown hook {argv[:1]}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
