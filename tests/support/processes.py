"""Whether a process the test saw start has ended."""

from __future__ import annotations

from pathlib import Path

from support.waiting import wait_for


def alive(pid: int) -> bool:
    """Whether the process runs (a zombie waiting to be reaped has ended)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def gone(pid: int, timeout: float = 5) -> bool:
    """Whether the process has ended within `timeout` seconds (a killed parent leaves its orphans
    to be reaped by init, a moment later)."""
    return not wait_for(lambda: alive(pid), timeout, until=lambda running: not running, raises=False)
