"""Checkout safety and incrementality, on dulwich objects directly (no Docker needed)."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest
from dulwich.repo import Repo

from middock_receiver.errors import MiddockError
from middock_receiver.pipeline.checkout import checkout


def git(path: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t"}
    env["GIT_COMMITTER_EMAIL"] = "t@t"
    return subprocess.run(["git", *args], cwd=path, env=env, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "repo"
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    return path


def commit_all(repo: Path, message: str) -> str:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "--allow-empty", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def test_exec_bits_and_symlinks_are_kept_and_only_changes_are_written(repo, tmp_path):
    (repo / "run.sh").write_text("#!/bin/sh\n")
    (repo / "run.sh").chmod(0o755)
    (repo / "link").symlink_to("run.sh")
    for n in range(50):
        (repo / f"f{n}.txt").write_text(str(n))
    first = commit_all(repo, "first")
    (repo / "f7.txt").write_text("changed")
    (repo / "f8.txt").unlink()
    second = commit_all(repo, "second")

    store = Repo(str(repo)).object_store
    one, two = tmp_path / "one", tmp_path / "two"
    assert checkout(store, first, one) == "52 files"
    assert checkout(store, second, two, previous=(first, one)) == f"2 changed files since {first[:7]}"
    assert os.access(two / "run.sh", os.X_OK) and os.readlink(two / "link") == "run.sh"
    assert (two / "f7.txt").read_text() == "changed" and not (two / "f8.txt").exists()
    assert (one / "f7.txt").read_text() == "7" and (one / "f8.txt").exists()  # the previous release is untouched
    assert (two / "f9.txt").stat().st_ino == (one / "f9.txt").stat().st_ino  # unchanged files are shared


def test_a_missing_previous_commit_falls_back_to_a_full_checkout(repo, tmp_path):
    (repo / "a").write_text("a")
    commit = commit_all(repo, "only")
    store = Repo(str(repo)).object_store
    previous = tmp_path / "previous"
    previous.mkdir()
    assert checkout(store, commit, tmp_path / "new", previous=("0" * 40, previous)) == "1 files"


def test_submodules_are_refused_with_their_name(repo, tmp_path):
    sha = commit_all(repo, "base")
    git(repo, "update-index", "--add", "--cacheinfo", f"160000,{sha},vendor/lib")
    git(repo, "commit", "-q", "-m", "with a submodule")
    commit = git(repo, "rev-parse", "HEAD")
    with pytest.raises(MiddockError, match="submodule vendor/lib is not supported"):
        checkout(Repo(str(repo)).object_store, commit, tmp_path / "out")


def test_entries_escaping_the_folder_are_refused(repo, tmp_path):
    blob = subprocess.run(
        ["git", "hash-object", "-w", "--stdin"], cwd=repo, input="x", capture_output=True, text=True
    ).stdout.strip()
    for name in ("..", ".git", ".GIT"):
        tree = subprocess.run(
            ["git", "mktree"], cwd=repo, input=f"100644 blob {blob}\t{name}\n", capture_output=True, text=True
        ).stdout.strip()
        commit = git(repo, "commit-tree", tree, "-m", "evil")
        with pytest.raises(MiddockError, match="would escape the checkout"):
            checkout(Repo(str(repo)).object_store, commit, tmp_path / f"out{len(name)}{name[-1]}")
    assert not (tmp_path / "x").exists()
    assert stat.S_ISDIR(os.lstat(tmp_path).st_mode)
