"""The one place that runs programs: argument lists only, output streamed line by line."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

PR_SET_PDEATHSIG = 1
# Beside each streamed program, a watcher: a shell reading a pipe only middock writes to. When
# the program is done, middock writes "done" and the watcher leaves; if middock dies first (kill
# -9, a reboot), the pipe ends without it and the watcher kills the program's whole process
# group: its own children too (a build script's `docker build`), which the program's death
# signal alone would leave running. A fixed script: the group's id is its argument.
WATCHER = 'read -r word; [ "$word" = done ] || kill -KILL -"$1" 2>/dev/null\n'


def die_with_parent() -> None:
    """In the child before exec: ask Linux to SIGKILL it when its parent dies."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def watch(group: int) -> Callable[[], None]:
    """Start the watcher of `group`; returns what tells it the program is done."""
    read_end, write_end = os.pipe()
    watcher = subprocess.Popen(
        ["/bin/sh", "-c", WATCHER, "middock-watch", str(group)],
        stdin=read_end,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    os.close(read_end)

    def done() -> None:
        os.write(write_end, b"done\n")
        os.close(write_end)
        watcher.wait()

    return done


@dataclass(frozen=True)
class Result:
    returncode: int
    timed_out: bool = False


def stream(
    argv: Sequence[str],
    on_line: Callable[[str], None],
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float | None = None,
) -> Result:
    """Run `argv`, passing each line of its merged stdout/stderr to `on_line` as it comes.

    The program gets no stdin and its own process group, so a timeout kills it and every
    child it started; so does this process's death (see WATCHER), so a crashed deploy leaves no
    `docker compose up` or `docker build` running behind it. Invalid UTF-8 is replaced, never fatal.
    """
    proc = subprocess.Popen(
        list(argv),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=dict(env) if env is not None else None,
        cwd=cwd,
        start_new_session=True,
        preexec_fn=die_with_parent,
    )
    done = watch(proc.pid)
    expired = threading.Event()

    def kill() -> None:
        expired.set()
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    timer = threading.Timer(timeout, kill) if timeout else None
    if timer:
        timer.daemon = True
        timer.start()
    try:
        assert proc.stdout is not None
        for raw in proc.stdout:
            on_line(raw.decode("utf-8", errors="replace").rstrip("\r\n"))
        returncode = proc.wait()
    finally:
        if timer:
            timer.cancel()
        done()
    return Result(returncode, expired.is_set())


def attached(argv: Sequence[str], env: Mapping[str, str], cwd: Path) -> int:
    """Run `argv` on our own stdin, stdout and stderr (a one-off command); its exit code.

    Ctrl-C reaches the program too (same process group), so we wait for it to wind down and
    report its exit code instead of dying with a traceback.
    """
    proc = subprocess.Popen(list(argv), env=dict(env), cwd=cwd)
    while True:
        try:
            return proc.wait()
        except KeyboardInterrupt:
            continue


def capture(
    argv: Sequence[str], env: Mapping[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess:
    """Run a short query (no streaming) and return its text output."""
    return subprocess.run(
        list(argv),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        errors="replace",
        env=dict(env) if env is not None else None,
        cwd=cwd,
    )
