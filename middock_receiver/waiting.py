"""Waiting for something to come right: poll what is still wrong until nothing is, or a time
limit, saying each new problem once (a deploy's health gate, on one server or a Swarm)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

POLL = 0.5


def until_clear(
    problems: Callable[[], list[str]],
    timeout: float,
    on_wait: Callable[[str], None],
    poll: float = POLL,
    wake: threading.Event | None = None,
    hopeless: Callable[[list[str]], bool] = lambda _: False,
) -> list[str]:
    """Poll `problems()` until it is empty, `hopeless` says no waiting can clear them, or
    `timeout` seconds passed; returns what remains. `wake`, when set, ends a pause early:
    something changed that is worth looking at at once."""
    deadline = time.monotonic() + timeout
    pause = wake or threading.Event()
    reported: set[str] = set()
    while True:
        found = problems()
        if not found or hopeless(found) or time.monotonic() >= deadline:
            return found
        for problem in found:
            if problem not in reported:
                on_wait(f"waiting: {problem}")
                reported.add(problem)
        if pause.wait(poll):
            pause.clear()


def doubling(first: float, last: float) -> Iterator[float]:
    """Pauses between asking again after something that should soon work did not (an app that
    has just started may not listen yet): `first`, then twice as long each time, up to `last`."""
    pause = first
    while True:
        yield pause
        pause = min(pause * 2, last)
