"""One deploy per app at a time, and the queue of deploys waiting for it.

The deploy lock is an flock on `state/deploy.lock`: the kernel drops it when its holder dies,
so a crash never leaves a stale lock. Each deploy request is a file in `state/queue/`, named so
they sort by arrival; a waiting request that finds a newer one behind it steps aside
("superseded"), so of several waiting pushes only the newest is built. `lock APP` is a
different thing: a hold, with a reason, that makes new deploys fail fast.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import MiddockError
from . import records
from .apps import App, write_atomic
from .releases import COMMIT

REQUEST_ID = re.compile(r"[0-9]{20}-[0-9]+\Z")


@dataclass
class Request:
    """A deploy asked for by a push, `deploy`, `rollback` or `config:set`."""

    commit: str
    ref: str
    pusher: str
    restore: int | None = None  # a kept release to run again without a build
    reason: str = "rollback"  # with `restore`: rollback, restart, scale web=3…
    id: str = field(default_factory=lambda: f"{time.time_ns():020d}-{os.getpid()}")
    # a gate-mode push (gate.py): the branch's commit when the push began, and git's
    # receive-pack process (pid, start time) that moves the branch if the deploy succeeds
    old: str | None = None
    receiver: list[int] | None = None

    @classmethod
    def load(cls, path: Path) -> Request | None:
        """A stored request, checked, also one an older middock wrote (its `rollback_to`); None
        when there is no such file."""
        stored = records.read_json(path)
        if stored is None:
            return None
        with records.checked(path):
            if isinstance(stored, dict) and "rollback_to" in stored:
                stored["restore"] = stored.pop("rollback_to")
            return records.typed(cls, stored).check()

    def check(self) -> Request:
        """As a push or a command makes it: its commits ids, its words one line each."""
        for name, commit in (("commit", self.commit), ("old", self.old or self.commit)):
            if not COMMIT.match(commit):
                raise ValueError(f"{name} {commit!r:.60} is not a commit id")
        if not REQUEST_ID.match(self.id):
            raise ValueError(f"id {self.id!r:.60} is not a request id")
        for name in ("ref", "pusher", "reason"):
            records.plain(getattr(self, name), name)
        if self.restore is not None and self.restore < 1:
            raise ValueError(f"restore {self.restore} is not a release number")
        if self.receiver is not None and len(self.receiver) != 2:
            raise ValueError("receiver is not a process id and start time")
        return self

    @property
    def short(self) -> str:
        return self.commit[:7]

    @property
    def gated(self) -> bool:
        return self.old is not None


@dataclass(frozen=True)
class Holder:
    """What the deploy holding the lock deploys, for those who wait."""

    release: int
    commit: str
    pusher: str


def queue_dir(app: App) -> Path:
    return app.state / "queue"


def request_path(app: App, request_id: str, suffix: str = ".json") -> Path:
    return queue_dir(app) / f"{request_id}{suffix}"


def enqueue(app: App, request: Request) -> None:
    queue_dir(app).mkdir(exist_ok=True)
    request_path(app, request.id, ".out").touch()
    write_atomic(request_path(app, request.id), json.dumps(asdict(request)))


def load_request(app: App, request_id: str) -> Request | None:
    """The queued request of that id; None when it is gone."""
    request = Request.load(request_path(app, request_id))
    if request is not None and request.id != request_id:
        raise records.invalid(request_path(app, request_id), f"it holds request {request.id}")
    return request


def newer_request(app: App, request: Request) -> Request | None:
    """The request that supersedes this one: a newer one waiting in the queue, or a newer one
    that already started (waiters may get the lock in any order)."""
    ids = sorted(p.name[: -len(".json")] for p in queue_dir(app).glob("*.json"))
    for request_id in reversed(ids):
        if request_id <= request.id:
            break
        newer = load_request(app, request_id)
        if newer is not None:
            return newer
    started = Request.load(app.state / "last-request.json")
    return started if started is not None and started.id > request.id else None


def mark_started(app: App, request: Request) -> None:
    write_atomic(app.state / "last-request.json", json.dumps(asdict(request)))


def finish_request(app: App, request: Request, code: int, upto: int | None = None) -> None:
    """Record the outcome for the follower and take the request off the queue; `upto`: the
    follower copies the output up to this offset only (what follows is the old release retiring)."""
    write_atomic(request_path(app, request.id, ".exit"), f"{code}\n" if upto is None else f"{code} {upto}\n")
    request_path(app, request.id).unlink(missing_ok=True)


class DeployLock:
    def __init__(self, app: App) -> None:
        self.app = app
        self.path = app.state / "deploy.lock"
        self.holder_path = app.state / "deploying.json"
        self.fd: int | None = None

    def _open(self) -> int:
        if self.fd is None:
            try:
                self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            except OSError:
                self.fd = os.open(self.path, os.O_RDONLY)  # a read-only state folder can still be read
        return self.fd

    def try_acquire(self) -> bool:
        try:
            fcntl.flock(self._open(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False

    def acquire(self) -> None:
        fcntl.flock(self._open(), fcntl.LOCK_EX)

    def release(self) -> None:
        if self.fd is not None:
            with contextlib.suppress(OSError):  # gone already, or a read-only state folder
                self.holder_path.unlink(missing_ok=True)
            os.close(self.fd)
            self.fd = None

    def is_held_elsewhere(self) -> bool:
        """True while another process is deploying (checked without blocking)."""
        if not self.path.exists():
            return False
        if self.try_acquire():
            self.release()
            return False
        return True

    def announce(self, holder: Holder) -> None:
        """Say what this holder is deploying, for those who wait."""
        write_atomic(self.holder_path, json.dumps(asdict(holder)))

    def holder(self) -> Holder | None:
        """What the holder said it deploys (None before it said so)."""
        return records.load(self.holder_path, Holder, check_holder)


def check_holder(holder: Holder) -> None:
    if not COMMIT.match(holder.commit):
        raise ValueError(f"commit {holder.commit!r:.60} is not a commit id")
    records.plain(holder.pusher, "pusher")


def hold_path(app: App) -> Path:
    return app.state / "hold"


def hold(app: App, reason: str) -> None:
    if records.CONTROL.search(reason):
        raise MiddockError(f"the reason {reason!r:.80} holds a newline or another control character")
    write_atomic(hold_path(app), reason + "\n")


def unhold(app: App) -> None:
    hold_path(app).unlink(missing_ok=True)


def check_not_held(app: App) -> None:
    reason = records.read_line(hold_path(app))
    if reason is not None:
        reason = reason.strip() or "no reason given"
        raise MiddockError(f"deploys of {app.name} are locked ({reason}); run unlock {app.name} to allow them")
