"""The one place that runs programs: argument lists only, output streamed line by line."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
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
    stopped: bool = False  # killed because a program run beside it failed (`stream_together`)


class Streamed:
    """A program started as `stream` starts it; `follow` passes its lines on until it ends."""

    def __init__(
        self,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        timeout: float | None = None,
    ) -> None:
        self.proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
        self.done = watch(self.proc.pid)
        self.expired = threading.Event()
        self.stopped = threading.Event()
        self.timer = threading.Timer(timeout, self.kill, [self.expired]) if timeout else None
        if self.timer:
            self.timer.daemon = True
            self.timer.start()

    def kill(self, reason: threading.Event) -> None:
        """SIGKILL the program's whole process group (its `docker build` too), saying why."""
        reason.set()
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def stop(self) -> None:
        self.kill(self.stopped)

    def follow(self, on_line: Callable[[str], None]) -> Result:
        try:
            assert self.proc.stdout is not None
            for raw in self.proc.stdout:
                on_line(raw.decode("utf-8", errors="replace").rstrip("\r\n"))
            returncode = self.proc.wait()
        except BaseException:  # passing a line on failed (a full disk): the program must not run on unread
            self.stop()
            self.proc.wait()
            raise
        finally:
            if self.timer:
                self.timer.cancel()
            self.done()
        return Result(returncode, self.expired.is_set(), self.stopped.is_set())


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
    return Streamed(argv, env, cwd, timeout).follow(on_line)


@dataclass(frozen=True)
class Failure:
    """The first of programs run together to fail: its index, and its result or why it could
    not start; `stopped`, the indexes of the others it stopped."""

    index: int
    result: Result | None = None
    error: OSError | None = None
    stopped: tuple[int, ...] = ()


def stream_together(
    argvs: Sequence[Sequence[str]],
    on_line: Callable[[int, str], None],
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float | None = None,
) -> Failure | None:
    """Run the programs at once, each as `stream` runs one (`timeout` is each one's), passing
    each line to `on_line` with its program's index, one line at a time.

    The first to fail (a non-zero exit, its timeout, or it cannot start) stops the others that
    still run: their whole process groups are killed, and they are waited for. Returns that
    failure, or None when every program exited 0. Should `on_line` raise, every program is
    stopped the same way and the exception raised here.
    """
    lock = threading.Lock()  # held to pass a line on, and to change what follows
    running: dict[int, Streamed] = {}
    results: dict[int, Result] = {}
    failures: list[Failure] = []
    raised: list[BaseException] = []

    def end(failure: Failure | None = None, error: BaseException | None = None) -> None:
        """The first failure (or exception) stops the rest; call with the lock held."""
        if not failures and not raised:
            for program in running.values():
                program.stop()
        if failure is not None:
            failures.append(failure)
        if error is not None:
            raised.append(error)

    def follow(index: int, program: Streamed) -> None:
        def one_line(line: str) -> None:
            with lock:
                on_line(index, line)

        try:
            result = program.follow(one_line)
        except BaseException as error:
            with lock:
                del running[index]
                end(error=error)
            return
        with lock:
            del running[index]
            results[index] = result
            if (result.returncode != 0 or result.timed_out) and not result.stopped:
                end(Failure(index, result))

    threads = []
    for index, argv in enumerate(argvs):
        with lock:
            if failures or raised:
                break
            try:
                program = running[index] = Streamed(argv, env, cwd, timeout)
            except OSError as error:  # a bad #! line, a binary for another machine
                end(Failure(index, error=error))
                break
        threads.append(threading.Thread(target=follow, args=(index, program), daemon=True))
        threads[-1].start()
    for thread in threads:
        thread.join()
    if raised:
        raise raised[0]
    if not failures:
        return None
    return replace(failures[0], stopped=tuple(index for index, result in sorted(results.items()) if result.stopped))


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
