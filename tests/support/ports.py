"""Ports for the tests, handed out once across every process on this machine.

A port the kernel called free could be handed to two pytest-xdist workers before either bound it,
so here a port is claimed: a file named after it in CLAIMS holds the claiming process's pid,
written under one lock, and nobody else is handed it while that process lives (a claim of a
process gone is free again). The ports come from
TEST_PORTS, which neither the kernel (its ephemeral ports start at 32768) nor middock's own
defaults (8000-8999, 20000-29999) hand out; each test home gets blocks of its own for middock's
choices (`Server.own_ports`).
"""

from __future__ import annotations

import fcntl
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from middock_receiver.jobs.runs import alive

TEST_PORTS = range(10000, 20000)
CLAIMS = Path("/tmp/middock-test-ports")


@contextmanager
def _claims_locked() -> Iterator[None]:
    CLAIMS.mkdir(mode=0o700, exist_ok=True)
    with open(CLAIMS / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _claimed(port: int) -> bool:
    try:
        pid = int((CLAIMS / str(port)).read_text() or 0)
    except (FileNotFoundError, ValueError):
        return False
    return alive(pid)


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _next_start() -> int:
    """Where the search begins: after the last port handed out, so a port just released is taken last."""
    try:
        return int((CLAIMS / ".next").read_text())
    except (FileNotFoundError, ValueError):
        return TEST_PORTS.start


def claim_block(count: int) -> list[int]:
    """`count` consecutive ports, free and claimed by this process until `release` (or its end)."""
    with _claims_locked():
        start = _next_start()
        for _ in range(2):  # from the last one handed out to the end, then from the start once more
            while start + count <= TEST_PORTS.stop:
                block = range(start, start + count)
                busy = [port for port in block if _claimed(port) or not _bindable(port)]
                if not busy:
                    for port in block:
                        (CLAIMS / str(port)).write_text(str(os.getpid()))
                    (CLAIMS / ".next").write_text(str(block.stop))
                    return list(block)
                start = busy[-1] + 1
            start = TEST_PORTS.start
    raise RuntimeError(f"no {count} consecutive free ports in {TEST_PORTS.start}-{TEST_PORTS.stop - 1}")


def release(ports: list[int]) -> None:
    """Give claimed ports back (what used them is gone)."""
    with _claims_locked():
        for port in ports:
            (CLAIMS / str(port)).unlink(missing_ok=True)


def free_port() -> int:
    """One free loopback port, this process's until it ends."""
    return claim_block(1)[0]
