"""Deploys run detached from whoever asked for them.

`submit` queues a request, starts the worker (worker.py) in its own session, and follows the
worker's output file, copying it to the pusher. If the pusher vanishes, only the follower
dies: the worker goes on to success or rollback, and its log is complete. The worker is a fork
of this process (no second interpreter to start: a rollback is over in well under a second)
that lets go of everything it shares with the pusher first: its session, its standard streams,
every other file. This module stays light (no Docker SDK) because every push starts it.
"""

from __future__ import annotations

import getpass
import os
import sys
import time
import traceback
from pathlib import Path
from typing import BinaryIO

from ..state.apps import App
from ..state.lock import Request, check_not_held, enqueue, request_path

FOLLOW_INTERVAL = 0.02
ERROR_PREFIX = b" !     "


def pusher() -> str:
    """Who asks for the deploy: the SSH key's name set by the forced command, else the local user."""
    return os.environ.get("MIDDOCK_PUSHER") or f"{getpass.getuser()} (local)"


def submit(app: App, request: Request, sink: BinaryIO | None = None, errors: BinaryIO | None = None) -> int:
    """Queue a deploy, run it detached, stream its output to `sink`; returns its exit code.

    On failure the last ` !     ` line is also written to `errors` (the CLI's stderr)."""
    check_not_held(app)
    enqueue(app, request)
    worker = start_worker(app, request)
    code, last_error = follow(app, request.id, worker, sink or sys.stdout.buffer)
    if code != 0 and errors is not None and last_error:
        errors.write(last_error)
        errors.flush()
    return code


def start_worker(app: App, request: Request) -> int:
    """Fork the deploy worker, detached: its own session, /dev/null for input and output, its
    errors to the request's `.err`, and no other file of ours (a pusher's connection held open
    by it would keep the pusher waiting). Returns its pid."""
    errors = os.open(request_path(app, request.id, ".err"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        os.close(errors)
        return pid
    code = 1
    try:
        os.setsid()
        null = os.open(os.devnull, os.O_RDWR)
        for fd, target in ((0, null), (1, null), (2, errors)):
            os.dup2(target, fd)
        os.closerange(3, os.sysconf("SC_OPEN_MAX") if os.sysconf("SC_OPEN_MAX") < 65536 else 65536)
        os.environ["MIDDOCK_HOME"] = str(app.home)
        from . import worker  # the deploy's modules (the Docker SDK…), in the worker only

        code = worker.main([app.name, request.id])
    except BaseException:
        traceback.print_exc()
    finally:
        os._exit(code)


def exited(pid: int) -> bool:
    """Whether the worker (our child) has ended; it is reaped then."""
    try:
        return os.waitpid(pid, os.WNOHANG)[0] == pid
    except ChildProcessError:
        return True


def follow(app: App, request_id: str, worker: int, sink: BinaryIO) -> tuple[int, bytes]:
    """Copy the worker's output to `sink` until it finishes (or, when the `.exit` file names an
    offset, the release went live: up to there); returns its exit code and last error line."""
    exit_path = request_path(app, request_id, ".exit")
    last_error = b""
    with open(request_path(app, request_id, ".out"), "rb") as stream:
        while True:
            outcome = read_exit(exit_path)
            finished = outcome is not None or exited(worker)
            if outcome and outcome[1] is not None and stream.tell() >= outcome[1]:
                break
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
    outcome = read_exit(exit_path)
    if outcome is not None:
        return outcome[0], last_error
    lost = b" !     the deploy process ended unexpectedly; see `logs` and `status`\n"
    sink.write(lost)
    sink.flush()
    return 1, lost


def read_exit(path: Path) -> tuple[int, int | None] | None:
    """The `.exit` file: the exit code, and how far the pusher follows the output (set when the
    release went live and the worker goes on retiring the old one)."""
    try:
        fields = path.read_text().split()
        return int(fields[0]), int(fields[1]) if len(fields) > 1 else None
    except (FileNotFoundError, ValueError, IndexError):
        return None
