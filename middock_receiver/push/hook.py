"""The git hooks' entry point: which ref updates deploy, then hand them to the worker."""

from __future__ import annotations

import os
import pwd
import sys
from pathlib import Path

from ..errors import MiddockError, one_line, os_error_line
from ..output import Output
from ..pipeline import gate
from ..pipeline.refs import RefUpdate, parse_updates, verdict
from ..previews import create, destroy
from ..server import privileges, rootless
from ..state import audit
from ..state.apps import App, read_settings
from ..state.lock import Request
from ..state.previews import find as find_preview
from .follow import pusher, submit


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


def deploy_preview(parent: App, update: RefUpdate, gated: bool, say: Output) -> int:
    """Deploy the branch's preview app; one this push made goes again if a gate push is rejected."""
    preview, made = create.open_preview(parent, update, say)
    code = deploy_push(preview, update, gated)
    if code != 0 and gated and made:
        destroy.destroy(preview, say)
    return code


def receive(repo: Path, stdin: str, hook: str, say: Output) -> int:
    """Both hooks. pre-receive runs before git moves any ref, and its non-zero exit makes git
    reject the whole push: it refuses a push that would make more previews than preview-max,
    then deploys in gate mode. post-receive deploys after the refs moved, unless in gate mode.
    A push of another branch deploys its preview (previews on); a deleted branch's preview is
    destroyed."""
    app = App(repo.name.removesuffix(".git"), repo.parent)
    settings = read_settings(app)
    updates = parse_updates(stdin)
    pushed = {create.branch_of(update) for update in updates}
    before_refs_move = hook == "pre-receive"
    if before_refs_move:
        create.check_room(app, updates, leaving=destroy.expired(app, spare=pushed))
    gated = settings["gate"] == "on"
    if gated != before_refs_move:
        return 0
    branch = settings["branch"]
    code = expire_previews(app, pushed, say)
    for update in updates:
        result = "ok"
        try:
            updated = receive_update(app, update, branch, gated, say)
            result = f"failed: exit {updated}" if updated else result
            code = updated or code
        except MiddockError as error:
            say.error(str(error))
            result, code = f"failed: {one_line(str(error))}", 1
        except OSError as error:
            say.error(f"{os_error_line(error)}; nothing was deployed")
            result, code = f"failed: {one_line(os_error_line(error))}", 1
        try:
            audit.append(app.home, audit.entry(f"push {update.ref} {update.new[:7]}", app.name, result))
        except (MiddockError, OSError) as error:
            say.error(f"the audit log was not written: {error}")
    return code


def expire_previews(app: App, pushed: set[str | None], say: Output) -> int:
    """Each push also destroys the previews past their preview-ttl (but those of its branches)."""
    try:
        destroy.expire(app, say, spare=pushed)
    except MiddockError as error:
        say.error(str(error))
        return 1
    return 0


def receive_update(app: App, update: RefUpdate, branch: str, gated: bool, say: Output) -> int:
    """One ref's update: the deploy branch deploys, another its preview, or the pusher is told why not."""
    name = create.branch_of(update)
    patterns = create.preview_patterns(app, update)
    if name and patterns is not None and create.matches(name, patterns):
        return deploy_preview(app, update, gated, say)
    preview = find_preview(app, name) if update.deleted and name else None
    if preview is not None:
        destroy.destroy(preview, say)
        return 0
    reason = verdict(update, branch)
    if reason and patterns is not None:
        reason += f"; no preview: it matches none of MIDDOCK_PREVIEW_BRANCHES ({' '.join(patterns)})"
    if reason:
        say.step(reason)
        return 0
    return deploy_push(app, update, gated)


def main(argv: list[str]) -> int:
    repo = Path(os.environ.get("GIT_DIR", ".")).resolve()
    # root pushing straight into the deploy user's repository: the deploy runs as that user
    privileges.become(pwd.getpwuid(repo.stat().st_uid))
    rootless.use_own_daemon()
    if argv[:1] not in (["post-receive"], ["pre-receive"]):
        print(f" !     unknown hook {argv[:1]}", file=sys.stderr)
        return 1
    say = Output(sys.stdout.buffer)
    try:
        return receive(repo, sys.stdin.read(), argv[0], say)
    except MiddockError as error:  # the app's records, or a push refused before git takes it
        say.error(str(error))
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
