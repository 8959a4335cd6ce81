"""One version: `middock_receiver.__version__`, printed by `middock --version`, `middock version`
(locally and through an SSH key's forced command) and `status`, and the one setup.py installs;
the CHANGELOG's sections are dated releases, each naming a commit of this repository, newest
first, above them only `Unreleased` (the next release, whose .dev0 the package is until then)."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest
from support.releases import RELEASE, git, has_commit, released

from middock_receiver import __version__
from middock_receiver.cli import main

ROOT = Path(__file__).resolve().parent.parent
VERSION = re.compile(r"(?P<release>\d+\.\d+\.\d+)(\.dev\d+)?")


def middock(*words: str, env: dict | None = None) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "middock_receiver", *words]
    return subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=30)


def in_git_checkout() -> bool:
    return git("rev-parse", "--is-inside-work-tree").stdout.strip() == "true"


def test_the_version_is_a_release_or_the_next_ones_dev_version():
    assert VERSION.fullmatch(__version__), __version__
    newest = released()[0][0]
    mine = VERSION.fullmatch(__version__)["release"]
    if ".dev" in __version__:
        assert as_tuple(mine) > as_tuple(newest), f"{__version__} is not the dev version of a release after {newest}"
    else:
        assert mine == newest, f"{__version__} is not in the CHANGELOG (newest release {newest})"


@pytest.mark.parametrize("words", [("--version",), ("version",)])
def test_version_commands_print_the_package_version(words):
    result = middock(*words)
    assert (result.returncode, result.stdout, result.stderr) == (0, f"middock {__version__}\n", "")


def test_version_over_ssh_through_the_forced_command(tmp_path):
    """`ssh deploy@host version`: sshd runs `middock ssh-serve --key NAME` with the request in
    SSH_ORIGINAL_COMMAND; it answers with the server's version and touches nothing."""
    env = {"PATH": "/usr/bin:/bin", "MIDDOCK_HOME": str(tmp_path), "SSH_ORIGINAL_COMMAND": "version"}
    result = middock("ssh-serve", "--key", "tester", env=env)
    assert (result.returncode, result.stdout, result.stderr) == (0, f"middock {__version__}\n", "")
    assert list(tmp_path.iterdir()) == []


def test_setup_py_installs_the_package_version():
    """setup.py's `version=`, evaluated with everything setup.py does before `setup()` (never run)."""
    path = ROOT / "setup.py"
    tree = ast.parse(path.read_text())
    calls = [stmt for stmt in tree.body if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call)]
    setup = next(stmt for stmt in calls if getattr(stmt.value.func, "id", None) == "setup")
    given = next(keyword.value for keyword in setup.value.keywords if keyword.arg == "version")
    before = ast.Module(body=tree.body[: tree.body.index(setup)], type_ignores=[])
    namespace: dict = {"__file__": str(path)}
    exec(compile(before, str(path), "exec"), namespace)
    assert eval(compile(ast.Expression(given), str(path), "eval"), namespace) == __version__


def test_status_json_and_its_last_line_name_the_version(tmp_path, monkeypatch, capsys):
    """status of an app with no release (its services, which need Docker, stubbed as none)."""
    (tmp_path / "web.git").mkdir()
    (tmp_path / ".middock" / "web").mkdir(parents=True)
    monkeypatch.setenv("MIDDOCK_HOME", str(tmp_path))
    monkeypatch.setattr("middock_receiver.operate.running.service_status", lambda app: [])
    assert main(["status", "web", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["version"] == __version__
    assert main(["status", "web"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == f"middock {__version__} on this server"


def test_changelog_sections_are_dated_releases_newest_first():
    text = (ROOT / "CHANGELOG.md").read_text()
    headings = re.findall(r"^## .*$", text, re.M)
    releases = [heading for heading in headings if heading != "## Unreleased"]
    assert headings[: len(headings) - len(releases)] in ([], ["## Unreleased"]), "only the first section is Unreleased"
    assert all(RELEASE.fullmatch(heading) for heading in releases), [h for h in releases if not RELEASE.fullmatch(h)]
    listed = released()
    assert listed, "no release in CHANGELOG.md"
    unnamed = [version for version, _, commit in listed if commit is None]
    assert unnamed in ([], [__version__]) and (not unnamed or listed[0][0] == __version__), (
        "only the release commit itself lists its release (the newest) without its commit"
    )
    assert [as_tuple(version) for version, _, _ in listed] == sorted((as_tuple(v) for v, _, _ in listed), reverse=True)
    assert len({version for version, _, _ in listed}) == len(listed), "a version is listed twice"
    dates = [date for _, date, _ in listed]
    assert dates == sorted(dates, reverse=True)


def test_each_release_names_a_commit_of_this_repository_made_that_day():
    if not in_git_checkout() or git("rev-parse", "--is-shallow-repository").stdout.strip() == "true":
        pytest.skip("needs a full git clone of middock")
    for version, date, commit in released():
        if commit is None:  # this tree is that release's commit
            continue
        assert has_commit(commit), f"{version}'s commit {commit} is not in this repository"
        in_history = git("merge-base", "--is-ancestor", commit, "HEAD").returncode == 0
        assert in_history, f"{version}'s commit {commit} is not in HEAD's history"
        stamp = int(git("show", "-s", "--format=%ct", commit).stdout)
        made = datetime.fromtimestamp(stamp, timezone.utc).strftime("%Y-%m-%d")
        assert made == date, f"{version} is dated {date}, its commit {commit} was made {made} (UTC)"


def as_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))
