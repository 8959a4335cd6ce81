"""The deploy worker: a process of its own, detached from whoever asked (see follow.py).

It waits for the app's deploy lock, steps aside when a newer request is queued behind
it (so of several waiting pushes only the newest is built), and otherwise runs the deploy.
Once it has ended and the pusher is let go, the app's webhooks are told (notify/), detached.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from ..errors import MiddockError, os_error_line
from ..output import Output
from ..pipeline import gate
from ..pipeline.deploy import Deploy
from ..state import config
from ..state.apps import App, middock_home
from ..state.lock import (
    DeployLock,
    Holder,
    Request,
    check_not_held,
    finish_request,
    load_request,
    mark_started,
    newer_request,
    request_path,
)
from ..state.releases import Release


def work(app: App, request: Request, out: Output, on_started: Callable[[Release], None] = lambda _: None) -> int:
    """Wait for the lock, coalesce, deploy. Returns the exit code for the follower.
    `on_started`: called with the release once the deploy has made it."""
    lock = DeployLock(app)
    if not lock.try_acquire():
        holder = lock.holder()
        if holder:
            out.step(
                f"Waiting for release {holder.release} ({holder.commit[:7]}, {holder.pusher or 'unknown'}) to finish"
            )
        else:
            out.step("Waiting for the deploy in progress to finish")
        lock.acquire()
    try:
        newer = newer_request(app, request)
        if newer is not None:
            if request.gated:
                out.error(f"Superseded by {newer.short}: rejected, not deployed (only the newest waiting push deploys)")
                return 1
            out.step(f"Superseded by {newer.short}: not deployed (only the newest waiting push deploys)")
            return 0
        check_not_held(app)
        if request.gated:
            gate.check_branch(app, request)
        out.mask(list(config.read_vars(app).values()))
        mark_started(app, request)
        deploy = Deploy(app, request, out)

        def announce(release: Release) -> None:
            lock.announce(Holder(release.number, request.commit, request.pusher))
            on_started(release)

        # the follower (the pusher's command) ends once the release is live; the old one drains after
        def live() -> None:
            out.followed_to = out.position()
            finish_request(app, request, 0, out.followed_to)

        if not deploy.run(on_started=announce, on_live=live):
            return 1
        if request.gated:  # the hook exits 0: git takes the objects and moves the branch
            finish_request(app, request, 0, out.followed_to)
            gate.settle(app, request, out)
        return 0
    except MiddockError as error:
        out.error(str(error))
        return 1
    except OSError as error:
        out.error(f"{os_error_line(error)}; nothing was deployed")
        return 1
    finally:
        lock.release()


def main(argv: list[str]) -> int:
    app = App.named(argv[0], middock_home())
    request = load_request(app, argv[1])
    if request is None:
        raise MiddockError(f"the deploy request {argv[1]} is not in {app.name}'s queue")
    out = Output.to_file(request_path(app, request.id, ".out"))
    code = 1
    made: list[Release] = []
    try:
        code = work(app, request, out, made.append)
    except MiddockError as error:  # a bad record read before the deploy lock was taken
        out.error(str(error))
    finally:
        finish_request(app, request, code, out.followed_to)
        gate.discard(app, request)
        out.close()
    if made:  # the deploy has ended and the pusher is let go: no webhook can delay the push
        from ..notify import announce  # imported only now: ~50 ms the pusher would wait for

        announce.release_finished(app, made[0].number)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
