"""Check out a pushed commit into a release folder with dulwich.

A first release writes the whole tree. Later releases start from a hard-linked copy of the
previous release's folder and apply only the tree changes between the two commits, so a
one-file change rewrites one file. Changed files are replaced (unlink, then write), never
modified in place, so the previous release's files are untouched.

Nothing is ever written outside the release folder: tree entries named `..`, `.git` or with
a `/` are refused, and no write goes through a symlink or a non-directory parent. A tree that
names one entry twice (git lets a crafted one in) is refused too: dulwich keeps one of the two,
so writing it would deploy a tree other than the one pushed.
"""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

from dulwich.diff_tree import CHANGE_DELETE, tree_changes
from dulwich.object_store import BaseObjectStore, iter_tree_contents
from dulwich.objects import S_ISGITLINK

from ..errors import MiddockError


def commit_tree(store: BaseObjectStore, commit: str) -> bytes:
    try:
        return store[commit.encode()].tree
    except KeyError:
        raise MiddockError(f"commit {commit} is not in the repository") from None


def checked_parts(path: bytes) -> list[str]:
    """The path's components, refusing any that could leave the folder."""
    parts = path.split(b"/")
    for part in parts:
        if part in (b"", b".", b"..") or part.lower() == b".git" or b"\0" in part:
            raise MiddockError(f"refusing tree entry {path.decode(errors='replace')!r}: it would escape the checkout")
    return [os.fsdecode(p) for p in parts]


def entry_names(raw: bytes, sha_length: int = 20) -> list[bytes]:
    """The names of a raw tree object's entries (`MODE NAME\\0SHA`…), duplicates kept."""
    names, at = [], 0
    while at < len(raw):
        space = raw.index(b" ", at)
        end = raw.index(b"\0", space)
        names.append(raw[space + 1 : end])
        at = end + 1 + sha_length
    return names


def check_names(store: BaseObjectStore, tree: bytes, old_tree: bytes | None = None, path: str = "") -> None:
    """Refuse a tree, or a subtree, that names an entry twice; subtrees unchanged since
    `old_tree` (checked when it deployed) are not read again."""
    if tree == old_tree:
        return
    obj = store[tree]
    names = entry_names(obj.as_raw_string())
    if len(set(names)) != len(names):
        twice = next(name for name in names if names.count(name) > 1).decode(errors="replace")
        raise MiddockError(f"refusing tree {path or '/'!r}: it names {twice!r} twice (git fsck: duplicateEntries)")
    old = store[old_tree] if old_tree else None
    for name, mode, sha in obj.iteritems():
        if stat.S_ISDIR(mode):
            before = old[name] if old is not None and name in old else (0, None)
            check_names(store, sha, before[1] if stat.S_ISDIR(before[0]) else None, f"{path}{os.fsdecode(name)}/")


class TreeWriter:
    """Writes tree entries below `root`, never through a symlink or a non-folder.

    Folders it has created or checked are remembered: an entry never replaces a folder, so
    they stay real folders while it writes (a whole tree is 20,000 entries, not 60,000 lstats).
    """

    def __init__(self, store: BaseObjectStore, root: Path) -> None:
        self.store = store
        self.root = root
        self.folders: set[Path] = {root}

    def parent_dir(self, parts: list[str]) -> Path:
        """Create (or verify) the real folders leading to an entry."""
        current = self.root
        for part in parts[:-1]:
            current = current / part
            if current in self.folders:
                continue
            try:
                st = os.lstat(current)
            except FileNotFoundError:
                os.mkdir(current)
                st = None
            if st is not None and not stat.S_ISDIR(st.st_mode):
                raise MiddockError(f"refusing to write below {current.relative_to(self.root)}: it is not a folder")
            self.folders.add(current)
        return current

    def write(self, path: bytes, mode: int, sha: bytes) -> None:
        if S_ISGITLINK(mode):
            raise MiddockError(
                f"submodule {path.decode(errors='replace')} is not supported: vendor it or fetch it in a build script"
            )
        parts = checked_parts(path)
        target = self.parent_dir(parts) / parts[-1]
        remove_entry(target)
        data = self.store[sha].as_raw_string()
        if stat.S_ISLNK(mode):
            os.symlink(data, target)
            return
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
        fd = os.open(target, flags, 0o755 if mode & 0o100 else 0o644)
        with os.fdopen(fd, "wb") as f:
            f.write(data)


def remove_entry(target: Path) -> None:
    try:
        st = os.lstat(target)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        raise MiddockError(f"refusing to replace folder {target.name!r} with a file")
    os.unlink(target)


def delete_entry(root: Path, path: bytes) -> None:
    parts = checked_parts(path)
    target = root.joinpath(*parts)
    real_root, real_parent = os.path.realpath(root), os.path.realpath(target.parent)
    if os.path.lexists(target) and os.path.commonpath([real_root, real_parent]) == real_root:
        os.unlink(target)
        prune_empty_dirs(root, target.parent)


def prune_empty_dirs(root: Path, folder: Path) -> None:
    while folder != root and folder.is_dir() and not folder.is_symlink() and not any(folder.iterdir()):
        folder.rmdir()
        folder = folder.parent


def write_tree(store: BaseObjectStore, tree: bytes, dest: Path) -> int:
    """Write a whole tree into the empty folder `dest`; returns the number of files."""
    dest.mkdir(parents=True)
    writer = TreeWriter(store, dest)
    count = 0
    for entry in iter_tree_contents(store, tree):
        writer.write(entry.path, entry.mode, entry.sha)
        count += 1
    return count


def update_tree(store: BaseObjectStore, old_tree: bytes, new_tree: bytes, previous: Path, dest: Path) -> int:
    """Make `dest` a hard-linked copy of `previous`, then apply the changes; returns changes applied."""
    subprocess.run(["cp", "-al", "--", str(previous), str(dest)], check=True)
    changes = list(tree_changes(store, old_tree, new_tree))
    for change in changes:
        if change.type == CHANGE_DELETE:
            delete_entry(dest, change.old.path)
    writer = TreeWriter(store, dest)
    for change in sorted((c for c in changes if c.type != CHANGE_DELETE), key=lambda c: c.new.path):
        writer.write(change.new.path, change.new.mode, change.new.sha)
    return len(changes)


def checkout(store: BaseObjectStore, commit: str, dest: Path, previous: tuple[str, Path] | None = None) -> str:
    """Check out `commit` into `dest`, incrementally from `previous` (commit, folder) when it exists.

    Returns a short description for the output. A failed incremental update (a damaged previous
    folder, a previous commit the repo no longer has) falls back to a full write, which applies
    the same safety checks, so the previous release can never poison the new one.
    """
    tree = commit_tree(store, commit)
    previous_tree = commit_tree(store, previous[0]) if previous and previous[0].encode() in store else None
    check_names(store, tree, previous_tree)
    if previous and previous[1].is_dir():
        try:
            count = update_tree(store, commit_tree(store, previous[0]), tree, previous[1], dest)
            return f"{count} changed files since {previous[0][:7]}"
        except (OSError, subprocess.CalledProcessError, MiddockError):
            subprocess.run(["rm", "-rf", "--", str(dest)], check=False)
    count = write_tree(store, tree, dest)
    return f"{count} files"


def file_at(store: BaseObjectStore, commit: str, name: str) -> str | None:
    """The text of file `name` at the top of `commit`'s tree, or None when there is none."""
    try:
        mode, sha = store[commit_tree(store, commit)][name.encode()]  # type: ignore[index]
    except KeyError:
        return None
    if not stat.S_ISREG(mode):
        return None
    return store[sha].data.decode("utf-8", errors="replace")  # type: ignore[attr-defined]
