"""Deploys run detached from whoever asked for them.

`submit` queues a request, starts the worker (worker.py) in its own session, and follows the
worker's output file, copying it to the pusher. If the pusher vanishes, only the follower
dies: the worker goes on to success or rollback, and its log is complete. This module stays
light (no Docker SDK) because every push starts it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import BinaryIO

from .state.apps import App
from .state.lock import Request, check_not_held, enqueue, request_path

FOLLOW_INTERVAL = 0.05
ERROR_PREFIX = b" !     "


def submit(app: App, request: Request, sink: BinaryIO | None = None, errors: BinaryIO | None = None) -> int:
    """Queue a deploy, run it detached, stream its output to `sink`; returns its exit code.

    On failure the last ` !     ` line is also written to `errors` (the CLI's stderr)."""
    check_not_held(app)
    enqueue(app, request)
    worker = subprocess.Popen(
        [sys.executable, "-I", "-m", "middock_receiver.worker", app.name, request.id],
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
