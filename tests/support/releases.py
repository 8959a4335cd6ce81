"""middock's releases as CHANGELOG.md lists them (`## VERSION — DATE (commit COMMIT)`, newest first), and a
release's files as `git archive COMMIT` gives them from this repository's own history. The release commit
itself lists its release without a commit (it cannot name itself); the next commit adds the name."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from support.middock import ROOT

RELEASE = re.compile(
    r"## (?P<version>\d+\.\d+\.\d+) — (?P<date>\d{4}-\d\d-\d\d)(?: \(commit (?P<commit>[0-9a-f]{7,40})\))?"
)


def released() -> list[tuple[str, str, str | None]]:
    """The CHANGELOG's releases (version, date, commit), as listed (commit None: this is the release commit)."""
    text = (ROOT / "CHANGELOG.md").read_text()
    return [(m["version"], m["date"], m["commit"]) for m in RELEASE.finditer(text)]


def git(*args: str) -> subprocess.CompletedProcess:
    """git in this checkout; text output, not checked."""
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True)


def has_commit(commit: str) -> bool:
    """Whether this checkout's history holds the commit (a shallow clone or a tarball may not)."""
    return git("cat-file", "-e", f"{commit}^{{commit}}").returncode == 0


def archive(commit: str, target: Path) -> Path:
    """The files of `commit` in the new folder `target`, as `git archive` gives them."""
    target.mkdir(parents=True)
    archived = subprocess.run(["git", "-C", str(ROOT), "archive", commit], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(target)], input=archived.stdout, check=True)
    return target
