"""Gate mode: deploy from the pre-receive hook, so that a failed deploy rejects the push.

Git runs pre-receive before it moves any ref, with the pushed objects still in its quarantine
(`GIT_QUARANTINE_PATH`); they join the repository only if the hook exits 0. A gate push first
hard-links them into its own folder, because git deletes the quarantine when receive-pack ends,
which a vanished pusher can make happen mid-deploy; the deploy reads them from there.

After a good deploy the worker keeps the deploy lock until the branch names the live commit:
git moves it once the hook exits 0, and if git's receive-pack ends without moving it (the pusher
vanished), middock moves it itself, with the pushed objects. So the app is never left live on a
commit the repository lacks, and the next waiting push finds the branch settled: if it moved
since that push began, git would refuse the push's update, so it is rejected before deploying.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import MiddockError
from ..output import Output
from ..state.apps import App
from ..state.lock import Request, request_path
from .refs import ZERO

if TYPE_CHECKING:
    from dulwich.repo import Repo

SETTLE_POLL = 0.1
SETTLE_TIMEOUT = 60.0  # how long git may take to move the branch after the hook said yes


def process_identity(pid: int) -> list[int] | None:
    """A live process's pid and start time (so that a reused pid is not taken for it), from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    if fields[0] in ("Z", "X"):
        return None
    return [pid, int(fields[19])]


def objects_dir(app: App, request: Request) -> Path:
    return request_path(app, request.id, ".objects")


def link_objects(source: Path, dest: Path) -> None:
    """Hard-link (or copy, across file systems) an object directory's files into `dest`.

    Pack indexes go last, as in git's own quarantine migration: an index makes its pack visible.
    Existing files are kept (objects are immutable); receive-pack's `.keep` locks are skipped.
    """
    files = sorted((p for p in source.rglob("*") if p.is_file()), key=lambda p: p.suffix == ".idx")
    for path in files:
        if path.suffix == ".keep":
            continue
        target = dest / path.relative_to(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(path, target)
        except FileExistsError:
            pass
        except OSError:
            shutil.copy2(path, target)


def hold_push(app: App, request: Request, old: str) -> None:
    """Make `request` a gate push: what the branch was, who moves it, and the pushed objects."""
    request.old = old
    request.receiver = process_identity(os.getppid())
    quarantine = os.environ.get("GIT_QUARANTINE_PATH")
    if quarantine:
        link_objects(Path(quarantine), objects_dir(app, request))


def repository(app: App, objects: Path | str | None = None) -> Repo:
    """The app's repository, with the objects of `objects` too (dulwich is imported here, on
    first use: most commands that import this module never open a repository)."""
    from dulwich.object_store import DiskObjectStore
    from dulwich.repo import Repo

    repo = Repo(str(app.repo))
    if objects:
        repo.object_store.alternates.append(DiskObjectStore(str(objects)))
    return repo


def pushed_repo(app: App) -> Repo:
    """The app's repository as the hook sees it: in gate mode, with the pushed objects that are
    still in git's quarantine."""
    return repository(app, os.environ.get("GIT_QUARANTINE_PATH"))


def open_repo(app: App, request: Request) -> Repo:
    """The app's repository; for a gate push, with the pushed objects git has not let in yet."""
    objects = objects_dir(app, request)
    return repository(app, objects if request.gated and objects.is_dir() else None)


def branch_head(app: App, ref: str) -> str:
    """The commit `ref` names in the app's repository, or ZERO when it does not exist."""
    try:
        return repository(app).refs[ref.encode()].decode()
    except KeyError:
        return ZERO


def check_branch(app: App, request: Request) -> None:
    """Refuse a gate push whose branch moved while it waited: git would refuse its update anyway."""
    head = branch_head(app, request.ref)
    if head != request.old:
        where = f"moved to {head[:7]}" if head != ZERO else "was deleted"
        name = request.ref.removeprefix("refs/heads/")
        raise MiddockError(f"{name} {where} while this push waited: rejected, not deployed (fetch and push again)")


def receiver_alive(request: Request) -> bool:
    return request.receiver is not None and process_identity(request.receiver[0]) == list(request.receiver)


def settle(app: App, request: Request, out: Output) -> None:
    """After a good deploy, make sure the branch names the live commit (call with the lock held)."""
    assert request.old is not None
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while receiver_alive(request) and time.monotonic() < deadline:
        if branch_head(app, request.ref) == request.commit:
            return
        time.sleep(SETTLE_POLL)
    if branch_head(app, request.ref) == request.commit:
        return
    name = request.ref.removeprefix("refs/heads/")
    objects = objects_dir(app, request)
    if objects.is_dir():
        link_objects(objects, app.repo / "objects")
    refs = repository(app).refs
    ref, new = request.ref.encode(), request.commit.encode()
    message = b"middock: the gate push deployed, git did not move the branch"
    if request.old == ZERO:
        moved = refs.add_if_new(ref, new, message=message)
    else:
        moved = refs.set_if_equals(ref, request.old.encode(), new, message=message)
    if moved:
        out.step(f"The push ended before git moved {name}; middock moved {name} to {request.short}, which is live")
    else:
        head = branch_head(app, request.ref)
        out.warn(f"{name} is at {head[:7]}, not at the live commit {request.short}; push {request.short} again")


def discard(app: App, request: Request) -> None:
    shutil.rmtree(objects_dir(app, request), ignore_errors=True)
