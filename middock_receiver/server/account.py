"""The deploy user's account as root manages it: its keys file, refreshing its apps after an
upgrade, and the files in its home that its user does not own (which an earlier middock,
running commands as root, could leave behind).

The keys file is root's: `/etc/middock/authorized_keys/USER`, root-owned, 0644, which sshd is
told to read for that user (install.sh's `Match User` in sshd_config.d). The user may read it,
never write it, so no key, not even a build script running as the user, can add a key or change
a key's role. It lives outside the home because the user owns the home: a root-owned file in it
could still be renamed away and replaced. Until install.sh has made it (an install of before),
the record is the user's own `~/.ssh/authorized_keys`.
"""

from __future__ import annotations

import os
import pwd
import stat
import sys
from collections.abc import Iterator
from pathlib import Path

from ..state import apps
from . import keys, privileges


def root_keys(user: pwd.struct_passwd) -> Path:
    return keys.ROOT_KEYS / user.pw_name


def home_keys(user: pwd.struct_passwd) -> Path:
    return Path(user.pw_dir) / ".ssh" / "authorized_keys"


def authorized_keys(user: pwd.struct_passwd) -> Path:
    """The keys file sshd reads for the user: root's once install.sh made it, else the user's own."""
    root = root_keys(user)
    return root if root.exists() else home_keys(user)


def home_keys_text(user_name: str) -> str:
    """The user's own keys file as text ('' if none); run as the user (a symlink there leads
    only where the user could go)."""
    try:
        return home_keys(pwd.getpwnam(user_name)).read_text()
    except FileNotFoundError:
        return ""


def take_keys(user: pwd.struct_passwd, tunnel_port: int | None = None) -> bool:
    """As root: make root's keys file of the user from its own (once), every middock key in it
    re-rendered (each may forward `tunnel_port`); the user's file stays, unread by sshd once it
    is told. False: root's was there."""
    root = root_keys(user)
    if root.exists():
        return False
    text = privileges.as_user(user, home_keys_text, user.pw_name)
    root.parent.mkdir(mode=0o755, parents=True, exist_ok=True)  # /etc/middock: root's, 0755
    keys.write(root, [keys.parse_line(line) for line in text.splitlines()], tunnel_port)
    return True


def refresh(home: Path) -> list[str]:
    """Point every app's hooks at this installation (install.sh runs this after an upgrade);
    returns the apps refreshed. Run as the user."""
    found = apps.all_apps(home)
    for app in found:
        if app.parent is None:  # a preview's repository is its parent's
            apps.install_hooks(app, sys.executable)
    return [app.name for app in found]


def pruned(folder: Path, name: str) -> bool:
    """Folders too big to walk, that only the user ever writes: release checkouts, the
    registry's storage, git's objects."""
    return (
        (name == "checkout" and folder.parent.name == "releases")
        or (name == "data" and folder.name == "registry")
        or (name == "objects" and folder.name.endswith(".git"))
    )


def middock_files(home: Path, app_names: list[str] | None = None) -> Iterator[Path]:
    """What middock writes in a home: the home itself, `.ssh`, `.middock` (every app's state, or
    only those named, and the edge's and the Swarm's) and the apps' repositories, without the
    release checkouts, the registry's storage and git's objects."""
    yield home
    tops = [home / ".ssh", home / ".middock"]
    tops += [home / f"{name}.git" for name in app_names] if app_names is not None else sorted(home.glob("*.git"))
    for top in tops:
        if not top.is_dir() or top.is_symlink():
            continue
        yield top
        for folder, dirs, files in os.walk(top):
            here = Path(folder)
            if here == home / ".middock" and app_names is not None:
                dirs[:] = [d for d in dirs if d.startswith("_") or d in app_names]
            dirs[:] = [d for d in dirs if not pruned(here, d)]
            for name in dirs + files:
                yield here / name


def not_owned(home: Path, app_names: list[str] | None = None, limit: int = 20) -> list[str]:
    """Up to `limit` paths of middock's files in the home that its owner does not own."""
    try:
        owner = home.stat().st_uid
    except OSError:
        return []
    found = []
    for path in middock_files(home, app_names):
        try:
            if path.lstat().st_uid != owner:
                found.append(str(path))
        except OSError:
            continue
        if len(found) >= limit:
            break
    return found


def not_owned_warning(home: Path, paths: list[str]) -> str:
    owner = pwd.getpwuid(home.stat().st_uid).pw_name
    shown = ", ".join(paths[:3]) + (", …" if len(paths) > 3 else "")
    return (
        f"{len(paths)}{'+' if len(paths) >= 20 else ''} file(s) under {home} are not owned by {owner}: {shown}; "
        f"as root, `middock refresh --user {owner}` gives them back"
    )


def reown(user: pwd.struct_passwd, home: Path) -> int:
    """As root: give the user back the files of its home that root owns, never following a
    symlink (every step is relative to a folder already opened); returns how many."""
    count = 0
    for _folder, dirs, files, dirfd in os.fwalk(home, follow_symlinks=False):
        for name in dirs + files:
            info = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
            if info.st_uid != 0 or not (stat.S_ISDIR(info.st_mode) or info.st_nlink == 1):
                continue  # the user's, or a hard link that may lead out of the home
            os.chown(name, user.pw_uid, user.pw_gid, dir_fd=dirfd, follow_symlinks=False)
            count += 1
    return count
