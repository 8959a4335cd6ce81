"""What middock keeps for the whole machine, outside any home: `/run/middock`, which only root
creates in, so that no other account can take a name there first (as anyone can in /tmp).

    /run/middock/                root's, 0755
    /run/middock/networks.lock   root:middock, 0640: only root and the deploy users (the group
                                 `middock`) may open it, so only they can hold it
    /run/middock/UID/            a deploy user's own, 0700: the edge's sockets of its homes whose
                                 path is too long for a socket address

install.sh makes them (a systemd-tmpfiles line makes them again at every boot); middock run by
root makes what is missing itself; middock run by anyone else checks them and never makes them.
"""

from __future__ import annotations

import contextlib
import grp
import os
import stat
from pathlib import Path

from ..errors import MiddockError

RUN = Path("/run/middock")
GROUP = "middock"
INSTALL = "sudo ./install.sh --user NAME"


def problem(info: os.stat_result, owner: int, kind: int, forbidden: int) -> str | None:
    """What makes a file unfit to trust, if anything: not of that `kind` (a link), not `owner`'s,
    or any `forbidden` mode bit set (others may write it, or open it)."""
    if stat.S_IFMT(info.st_mode) != kind:
        return "is not a folder" if kind == stat.S_IFDIR else "is not a plain file"
    if info.st_uid != owner:
        return f"belongs to uid {info.st_uid}, not {owner}"
    if info.st_mode & forbidden:
        return f"has mode {stat.S_IMODE(info.st_mode):04o}, open to other accounts"
    return None


def checked(path: Path, owner: int, kind: int, forbidden: int) -> Path:
    """`path`, once `problem` finds nothing wrong with it (never following a link)."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        raise MiddockError(f"{path} is missing: run install.sh as root to make it ({INSTALL})") from None
    found = problem(info, owner, kind, forbidden)
    if found:
        raise MiddockError(f"{path} {found}: remove it, then run install.sh as root to make it ({INSTALL})")
    return path


def make_folder(path: Path, mode: int, uid: int, gid: int) -> None:
    """As root: create folder `path`, owned and moded as given, unless it exists (its parent is
    root's alone, so nobody can slip anything in between)."""
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, 0o700)
        os.chown(path, uid, gid, follow_symlinks=False)
        os.chmod(path, mode, follow_symlinks=False)


def folder(run: Path = RUN) -> Path:
    """The machine's folder, root's, which no one else may write."""
    if os.geteuid() == 0:
        make_folder(run, 0o755, 0, 0)
    return checked(run, 0, stat.S_IFDIR, 0o022)


def group_id() -> int:
    """The deploy users' group (root's own until install.sh has made it)."""
    try:
        return grp.getgrnam(GROUP).gr_gid
    except KeyError:
        return 0


def lock(name: str, run: Path = RUN) -> Path:
    """The lock file `name` that every home of the machine takes: only root and the deploy users
    may open it (root's, read-only for the group `middock`), so no other account can hold it."""
    path = folder(run) / name
    if os.geteuid() == 0:
        with contextlib.suppress(FileExistsError):
            fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            try:
                os.fchown(fd, 0, group_id())
                os.fchmod(fd, 0o640)
            finally:
                os.close(fd)
    checked(path, 0, stat.S_IFREG, 0o027)
    if not os.access(path, os.R_OK):
        if os.lstat(path).st_gid != group_id():
            raise MiddockError(f"{path} is not open to the group {GROUP}: run install.sh as root to fix it ({INSTALL})")
        raise MiddockError(
            f"{path}: only root and the group {GROUP} may take this lock, and uid {os.getuid()} is not in it; "
            f"install.sh adds a deploy user to it ({INSTALL}), then log in again"
        )
    return path


def user_folder(uid: int, gid: int, run: Path = RUN) -> Path:
    """`/run/middock/UID`: the user's own folder (0700), which only root makes."""
    path = folder(run) / str(uid)
    if os.geteuid() == 0:
        make_folder(path, 0o700, uid, gid)
    return checked(path, uid, stat.S_IFDIR, 0o077)
