"""Deploys run detached from whoever asked for them.

`submit` queues a request, starts a worker process in its own session, and follows the
worker's output file, copying it to the pusher. If the pusher vanishes, only the follower
dies: the worker goes on to success or rollback, and its log is complete.

The worker waits for the app's deploy lock, steps aside when a newer request is queued behind
it (so of several waiting pushes only the newest is built), and otherwise runs the deploy.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import BinaryIO

from . import config, gate
from .apps import App, middock_home
from .deploy import Deploy
from .errors import MiddockError, os_error_line
from .lock import (
    DeployLock,
    Request,
    check_not_held,
    enqueue,
    finish_request,
    load_request,
    mark_started,
    newer_request,
    request_path,
)
from .output import Output
from .releases import Release

FOLLOW_INTERVAL = 0.1
ERROR_PREFIX = b" !     "


def submit(app: App, request: Request, sink: BinaryIO | None = None, errors: BinaryIO | None = None) -> int:
    """Queue a deploy, run it detached, stream its output to `sink`; returns its exit code.

    On failure the last ` !     ` line is also written to `errors` (the CLI's stderr)."""
    check_not_held(app)
    enqueue(app, request)
    worker = subprocess.Popen(
        [sys.executable, "-m", "middock_receiver.worker", app.name, request.id],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=open(request_path(app, request.id, ".err"), "wb"),
        start_new_session=True,
        env={**os.environ, "MIDDOCK_HOME": str(app.home)},
    )
    code, last_error = follow(app, request.id, worker, sink or sys.stdout.buffer)
    if code != 0 and errors is not None and last_error:
        errors.write(last_error)
        errors.flush()
    return code


def follow(app: App, request_id: str, worker: subprocess.Popen, sink: BinaryIO) -> tuple[int, bytes]:
    """Copy the worker's output to `sink` until it finishes; returns its exit code and last error line."""
    exit_path = request_path(app, request_id, ".exit")
    last_error = b""
    with open(request_path(app, request_id, ".out"), "rb") as stream:
        while True:
            finished = exit_path.exists() or worker.poll() is not None
            line = stream.readline()
            if line.endswith(b"\n") or (line and finished):
                sink.write(line)
                sink.flush()
                if line.startswith(ERROR_PREFIX):
                    last_error = line
            elif finished:
                break
            else:
                stream.seek(-len(line), os.SEEK_CUR)
                time.sleep(FOLLOW_INTERVAL)
    if exit_path.exists():
        return int(exit_path.read_text()), last_error
    lost = b" !     the deploy process ended unexpectedly; see `logs` and `status`\n"
    sink.write(lost)
    sink.flush()
    return 1, lost


def work(app: App, request: Request, out: Output) -> int:
    """Wait for the lock, coalesce, deploy. Returns the exit code for the follower."""
    lock = DeployLock(app)
    if not lock.try_acquire():
        holder = lock.holder()
        if holder:
            out.step(
                f"Waiting for release {holder.get('release')} ({holder.get('commit', '')[:7]}, "
                f"{holder.get('pusher') or 'unknown'}) to finish"
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
            lock.announce({"release": release.number, "commit": request.commit, "pusher": request.pusher})

        if not deploy.run(on_started=announce):
            return 1
        if request.gated:
            finish_request(app, request, 0)  # the hook exits 0: git lets the objects in and moves the branch
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
    out = Output.to_file(request_path(app, request.id, ".out"))
    code = 1
    try:
        code = work(app, request, out)
    finally:
        finish_request(app, request, code)
        gate.discard(app, request)
        out.close()
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
