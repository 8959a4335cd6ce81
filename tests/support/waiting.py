"""Waiting: ask again until the answer is the one awaited, within a time limit."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(
    ask: Callable[[], T],
    timeout: float = 60,
    what: str = "condition",
    interval: float = 0.05,
    until: Callable[[T], object] = bool,
    raises: bool = True,
) -> T:
    """ask() every `interval` seconds until `until(answer)` holds (by default: a true answer), and that
    answer. After `timeout` seconds: an AssertionError naming `what`, or with raises=False the last answer
    (for a caller that reports it and goes on)."""
    deadline = time.monotonic() + timeout
    while True:
        answer = ask()
        if until(answer):
            return answer
        if time.monotonic() >= deadline:
            if raises:
                raise AssertionError(f"timed out waiting for {what}")
            return answer
        time.sleep(interval)
