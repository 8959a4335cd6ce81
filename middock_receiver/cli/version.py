"""Which middock this is: the package's `__version__`, and for a development version run from
a git checkout, the commit checked out (`0.3.0.dev0+g23cc507`, a PEP 440 local version).

The commit is read from the checkout's own files, only when a version is shown: no program
runs, and importing this costs nothing.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from .. import __version__

OBJECT_ID = re.compile(r"[0-9a-f]{40}([0-9a-f]{24})?")  # SHA-1, or SHA-256


def version() -> str:
    """This middock's version; a development version run from a git checkout ends in `+g` and
    the first 7 digits of the commit."""
    if ".dev" not in __version__:
        return __version__
    commit = checkout_commit(Path(__file__).resolve().parents[2])  # the folder holding middock_receiver/
    return f"{__version__}+g{commit[:7]}" if commit else __version__


def version_line() -> str:
    return f"middock {version()}"


def checkout_commit(source: Path) -> str | None:
    """The commit checked out in `source`, if it is middock's git checkout (its `.git` a folder,
    or a worktree's `.git` file naming one); None for an installed package or anything unreadable."""
    if not (source / "setup.py").is_file():
        return None
    try:
        git = source / ".git"
        if git.is_file():
            git = source / git.read_text().removeprefix("gitdir:").strip()
        head = (git / "HEAD").read_text().strip()
        if head.startswith("ref: "):
            return ref_commit(git, head.removeprefix("ref: "))
        return head if OBJECT_ID.fullmatch(head) else None
    except (OSError, UnicodeDecodeError):
        return None


def ref_commit(git: Path, ref: str) -> str | None:
    """What `ref` points at: its file (in a worktree's own folder, then the shared one), else its
    line in packed-refs."""
    common = git / (git / "commondir").read_text().strip() if (git / "commondir").is_file() else git
    for folder in (git, common):
        if (folder / ref).is_file():
            commit = (folder / ref).read_text().strip()
            return commit if OBJECT_ID.fullmatch(commit) else None
    if (common / "packed-refs").is_file():
        for line in (common / "packed-refs").read_text().splitlines():
            commit, _, name = line.partition(" ")
            if name == ref and OBJECT_ID.fullmatch(commit):
                return commit
    return None


class ShowVersion(argparse.Action):
    """`middock --version`: the version line, and exit 0 (the version is found only when asked)."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help="print middock's version")

    def __call__(self, parser: argparse.ArgumentParser, *args: object) -> None:
        print(version_line())
        parser.exit()
