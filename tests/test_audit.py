"""Who did what, without Docker or sshd: the audit log's file (0600, rotated, read back across its
rotations), and the lines the `middock` command writes, locally as root and through a key's
forced command (the dispatcher run with SSH_ORIGINAL_COMMAND, as sshd runs it). A refused or
read-only command writes nothing. The same over a real sshd is in test_ssh.py."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from support.ssh_server import remove_user, unique_user, world_readable_dir

from middock_receiver.state import audit


def test_lines_are_appended_0600_and_read_back_by_app(tmp_path):
    for number, app in enumerate(["shop", "blog", "shop"]):
        audit.append(tmp_path, audit.entry(f"lock {number}", app, "ok", ("dan", "SHA256:x")))
    assert audit.log_path(tmp_path).stat().st_mode & 0o777 == 0o600
    assert [line.command for line in audit.read(tmp_path, "shop")] == ["lock 0", "lock 2"]
    assert [line.command for line in audit.read(tmp_path, count=1)] == ["lock 2"]
    assert audit.read(tmp_path, count=0) == []


def test_the_log_rotates_and_is_read_across_its_rotations(tmp_path, monkeypatch):
    monkeypatch.setattr(audit, "MAX_BYTES", 300)
    for number in range(40):
        audit.append(tmp_path, audit.entry(f"lock {number}", "shop", "ok", ("dan", "")))
    files = sorted(path.name for path in audit.log_path(tmp_path).parent.glob("audit.log*"))
    assert files == ["audit.log", "audit.log.1", "audit.log.2", "audit.log.3"]
    assert all(path.stat().st_size < 600 for path in audit.log_path(tmp_path).parent.glob("audit.log*"))
    assert [line.command for line in audit.read(tmp_path, count=3)] == ["lock 37", "lock 38", "lock 39"]


def test_a_line_that_is_not_ours_is_skipped(tmp_path):
    audit.append(tmp_path, audit.entry("lock", "shop", "ok", ("dan", "")))
    with audit.log_path(tmp_path).open("a") as file:
        file.write("not json\n{}\n")
    assert [line.actor for line in audit.read(tmp_path)] == ["dan"]


class Home:
    """A home of root's with one app, and `middock` run locally or through a key's forced command."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / "home"
        self.path.mkdir()
        self.env = {**os.environ, "MIDDOCK_HOME": str(self.path)}
        self.app = f"au-{uuid.uuid4().hex[:8]}"
        self.run("apps:create", self.app)

    def run(self, *argv: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "middock_receiver", *argv], env=self.env, capture_output=True, text=True, timeout=60
        )

    def over_ssh(self, request: str, *key: str) -> subprocess.CompletedProcess:
        env = {**self.env, "SSH_ORIGINAL_COMMAND": request}
        return subprocess.run(
            [sys.executable, "-m", "middock_receiver", "ssh-serve", "--key", *key],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def lines(self) -> list[dict]:
        return json.loads(self.run("audit", "-n", "100", "--json").stdout)


@pytest.fixture
def home(tmp_path) -> Home:
    return Home(tmp_path)


def test_a_local_change_is_recorded_as_root(home):
    """`middock audit` shows apps:create by root."""
    [line] = home.lines()
    assert (line["actor"], line["fingerprint"], line["command"], line["app"], line["result"]) == (
        "root",
        "",
        "apps:create",
        home.app,
        "ok",
    )
    assert f"root  apps:create  {home.app}  ok" in home.run("audit").stdout


def test_a_keys_changes_are_recorded_with_its_name_and_a_failure_with_its_line(home):
    assert home.over_ssh(f"lock {home.app} exams", "dan", "--role", "deploy").returncode == 0
    assert home.over_ssh("lock nope", "dan", "--role", "deploy").returncode == 1
    recorded = [(line["actor"], line["command"], line["app"], line["result"]) for line in home.lines()[1:]]
    assert recorded == [
        ("dan", "lock", home.app, "ok"),
        ("dan", "lock", "nope", "failed: app 'nope' does not exist; create it with: apps:create nope"),
    ]


def test_a_read_only_session_and_a_refused_command_leave_no_line(home):
    """A read key that looks around, then tries to change something, leaves the log as it was."""
    before = home.lines()
    for request in (f"status {home.app}", f"config {home.app}", "apps", f"releases {home.app}"):
        assert home.over_ssh(request, "rita", "--role", "read").returncode == 0, request
    refused = home.over_ssh(f"lock {home.app}", "rita", "--role", "read")
    assert (refused.returncode, refused.stderr) == (1, " !     refused: key rita has role read; lock needs deploy\n")
    other = home.over_ssh(f"lock {home.app}", "dan", "--role", "deploy", "--apps", "shop")
    assert other.stderr == f" !     refused: key dan has role deploy on shop; lock on {home.app} needs that app\n"
    assert home.lines() == before
    assert not (home.path / ".middock" / home.app / "lock").exists()


def test_the_audit_log_is_an_admins_over_ssh(home):
    assert home.over_ssh("audit", "dan", "--role", "deploy").stderr == (
        " !     refused: key dan has role deploy; audit needs admin\n"
    )
    assert home.over_ssh("audit --json", "alice").returncode == 0  # a key added before roles: admin


def test_a_key_of_some_apps_lists_only_those(home):
    listed = home.over_ssh("apps --json", "dan", "--role", "read", "--apps", "shop")
    assert (listed.returncode, json.loads(listed.stdout)) == (0, [])
    assert [row["app"] for row in json.loads(home.over_ssh("apps --json", "alice").stdout)] == [home.app]


def test_roots_command_for_the_deploy_user_is_recorded_as_root_in_that_users_log():
    """root's `keys:remove … --user NAME` runs as NAME, but the line says root did it."""
    user, folder = unique_user(), world_readable_dir("middock-audit-")
    subprocess.run(["useradd", "--create-home", "--home-dir", str(folder / "h"), user], check=True)
    try:
        env = {key: value for key, value in os.environ.items() if key != "MIDDOCK_HOME"}
        argv = [sys.executable, "-m", "middock_receiver", "keys:remove", "nobody", "--user", user]
        assert subprocess.run(argv, env=env, capture_output=True, timeout=60).returncode == 1
        [line] = audit.read(folder / "h")
        assert (line.actor, line.command, line.result) == (
            "root",
            "keys:remove",
            "failed: no key is named 'nobody'; see keys:list",
        )
        assert audit.log_path(folder / "h").stat().st_uid == pwd.getpwnam(user).pw_uid
    finally:
        remove_user(user)
        shutil.rmtree(folder, ignore_errors=True)
