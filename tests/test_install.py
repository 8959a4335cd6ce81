"""install.sh run for real on this machine (as root): twice, as an upgrade, keeping what it must."""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import shutil
import subprocess
from pathlib import Path

import pytest
from support.install import Installed, owned_by_root
from support.middock import ROOT
from support.ssh_server import Sshd, as_user, remove_user, run_install, sshd_settings, unique_user, world_readable_dir

from middock_receiver.server import rootless

# A home of install.sh's deploy user takes middock's default ports: one worker runs these modules.
pytestmark = pytest.mark.xdist_group("default-ports")


def snapshot(root: Path) -> dict[str, tuple]:
    """Every file, folder and link under `root`: its mode, owner and content (or target); the
    edge's logs (a reload writes a line) and the audit log's content (install.sh's commands are
    recorded) aside."""
    found = {}
    for folder, dirs, files in os.walk(root):
        if folder.endswith("_edge/logs"):
            continue
        for name in dirs + files:
            path = Path(folder, name)
            if name == "audit.log":
                found[str(path.relative_to(root))] = (path.lstat().st_mode, path.lstat().st_uid)
                continue
            info = path.lstat()
            if path.is_symlink():
                content = os.readlink(path)
            elif path.is_file():
                content = hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                content = None
            found[str(path.relative_to(root))] = (info.st_mode, info.st_uid, info.st_gid, content)
    return found


def shadow_password(user: str) -> str:
    return next(
        line.split(":")[1] for line in Path("/etc/shadow").read_text().splitlines() if line.split(":")[0] == user
    )


def account(user: str) -> tuple:
    entry = pwd.getpwnam(user)
    groups = subprocess.run(["id", "-nG", user], capture_output=True, text=True).stdout.split()
    return tuple(entry), shadow_password(user), sorted(groups)


@pytest.fixture(scope="module")
def installed():
    installed = Installed(world_readable_dir("middock-install-"))
    try:
        installed.first = installed.install("--acme-email", "ops@example.org")
        yield installed
    finally:
        subprocess.run([installed.middock, "edge:stop", "--user", installed.user], capture_output=True)
        remove_user(installed.user)
        shutil.rmtree(installed.base, ignore_errors=True)


def test_first_install_sets_up_middock_the_user_and_the_key(installed):
    assert installed.first is not None
    out = installed.first.stdout
    assert f"git remote add production {installed.user}@" in out and f"ssh {installed.user}@" in out
    assert os.readlink(installed.base / "bin" / "middock") == installed.middock
    passwd, password, groups = account(installed.user)
    assert "docker" not in groups and password == "*"  # its own rootless daemon: a deploy key is not root
    assert rootless.answers(pwd.getpwnam(installed.user).pw_uid)
    listed = subprocess.run([installed.middock, "keys:list", "--user", installed.user], capture_output=True, text=True)
    assert listed.stdout.startswith("alice@laptop ")
    keys_file = Path("/etc/middock/authorized_keys") / installed.user  # root's: no key can change it
    line = keys_file.read_text()
    assert line.startswith(f'command="{installed.base}/venv/bin/python3 -I -m middock_receiver ssh-serve')
    assert (keys_file.stat().st_uid, oct(keys_file.stat().st_mode & 0o777)) == (0, "0o644")
    assert not (installed.home / ".ssh" / "authorized_keys").exists()
    setting = (sshd_settings(installed.base) / f"middock-{installed.user}.conf").read_text()
    assert f"Match User {installed.user}\n    AuthorizedKeysFile /etc/middock/authorized_keys/%u\n" in setting
    assert owned_by_root(installed.home) == []


def test_the_edge_runs_as_the_deploy_user_on_the_ports_given(installed):
    edge = installed.edge()
    assert edge["running"] == {"haproxy": True, "caddy": True}
    assert (edge["settings"]["http-port"], edge["settings"]["https-port"]) == installed.edge_ports
    assert edge["settings"]["acme-email"] == "ops@example.org" and edge["not_owned"] == []
    for proxy in ("haproxy", "caddy"):
        pid = (installed.home / ".middock" / "_edge" / f"{proxy}.pid").read_text().split()[0]
        assert Path(f"/proc/{pid}").stat().st_uid == pwd.getpwnam(installed.user).pw_uid


def test_second_run_upgrades_in_place_and_keeps_apps_config_and_keys(installed):
    app = "keep-me"
    as_user(installed.user, installed.middock, "apps:create", app)
    as_user(installed.user, installed.middock, "config:set", app, "SECRET=s3cret value", "--no-deploy")
    before, user_before = snapshot(installed.home), account(installed.user)

    init = installed.source / "middock_receiver" / "__init__.py"
    init.write_text(init.read_text() + 'UPGRADE_MARK = "second"\n')
    hooks = installed.home / f"{app}.git" / "hooks"
    as_user(installed.user, "cp", "/dev/null", str(hooks / "post-receive"))  # a hook an older version left
    as_user(installed.user, "rm", str(hooks / "pre-receive"))  # which had no pre-receive outside gate mode

    master = installed.haproxy_master()
    second = installed.install()
    assert "Already authorized: key alice@laptop" in second.stdout
    assert installed.haproxy_master() == master and installed.edge()["running"] == {"haproxy": True, "caddy": True}
    assert snapshot(installed.home) == before  # the hooks are back as they were; nothing else moved
    assert account(installed.user) == user_before and owned_by_root(installed.home) == []
    python = installed.base / "venv" / "bin" / "python3"
    code = "import middock_receiver as m; print(m.UPGRADE_MARK)"
    mark = subprocess.run([python, "-I", "-c", code], capture_output=True)  # -I: not the source folder here
    assert mark.stdout == b"second\n"
    config = as_user(installed.user, installed.middock, "config", app, "--reveal").stdout
    assert "SECRET=s3cret value" in config


def test_root_commands_act_as_the_deploy_user_and_give_back_what_root_left(installed):
    """Root's own commands, run from root's private folder, leave nothing of root's in the home;
    refresh gives back what an earlier middock left to root, and `edge` says so until then."""
    middock = [installed.middock]
    user = ["--user", installed.user]
    for command in (["edge:set", "acme-email=admin@example.org"], ["edge"], ["keys:list"], ["apps"], ["help"]):
        result = subprocess.run([*middock, *command, *(user if command != ["help"] else [])],
                                capture_output=True, text=True, cwd=installed.source.parent)  # fmt: skip
        assert result.returncode == 0, result.stderr
    created = subprocess.run([*middock, "apps:create", "made-by-root", *user], capture_output=True, text=True)
    assert created.returncode == 0 and (installed.home / "made-by-root.git").is_dir(), created.stderr
    assert owned_by_root(installed.home) == []
    left = installed.home / ".middock" / "_edge" / "left-by-root"
    left.write_text("an earlier middock wrote this as root\n")
    edge = json.loads(subprocess.run([*middock, "edge", "--json", *user], capture_output=True, text=True).stdout)
    assert edge["not_owned"] == [str(left)]
    warned = subprocess.run([*middock, "edge", *user], capture_output=True, text=True)
    assert "not owned by" in warned.stderr and str(left) in warned.stderr
    refreshed = subprocess.run([*middock, "refresh", *user], capture_output=True, text=True)
    assert "Gave" in refreshed.stdout and owned_by_root(installed.home) == [], refreshed.stdout + refreshed.stderr
    left.unlink()
    as_user(installed.user, installed.middock, "apps:destroy", "made-by-root", "--force")


def test_the_audit_log_is_roots_and_the_deploy_user_can_only_append_to_it(installed, tmp_path):
    """install.sh's audit log: root's file, the user's group may append and read; root's changes for the
    user land there, `audit` reads them back, the user can neither empty nor remove it, and logrotate
    rotates it, the new one append-only again and the old lines still read."""
    user = installed.user
    log = Path(f"/var/log/middock/audit-{user}.log")
    info = log.stat()
    assert (info.st_uid, info.st_gid, info.st_mode & 0o777) == (0, pwd.getpwnam(user).pw_gid, 0o660)
    assert "a" in subprocess.run(["lsattr", str(log)], capture_output=True, text=True).stdout.split()[0]
    locked = subprocess.run([installed.middock, "lock", "audited-app", "--user", user], capture_output=True, text=True)
    assert "audited-app" in locked.stderr  # no such app: a failed change, recorded all the same
    line = json.loads(log.read_text().splitlines()[-1])
    assert (line["actor"], line["app"], line["result"][:7]) == ("root", "audited-app", "failed:"), line
    for attempt in ([f": > {log}"], [f"rm -f {log}"], [f"mv {log} {log}.x"]):
        assert as_user(user, "sh", "-c", *attempt, check=False).returncode != 0, attempt
    assert log.stat().st_size > 0

    config = tmp_path / "logrotate.conf"  # install.sh's, for this user's log only (others' are other tests')
    config.write_text(Path("/etc/logrotate.d/middock").read_text().replace("/var/log/middock/audit-*.log", str(log)))
    rotated = subprocess.run(["logrotate", "--force", "--state", str(tmp_path / "state"), str(config)],
                             capture_output=True, text=True)  # fmt: skip
    assert rotated.returncode == 0, rotated.stderr
    old = log.with_name(f"{log.name}.1")
    assert old.stat().st_mode & 0o777 == 0o640 and log.stat().st_size == 0
    assert "a" in subprocess.run(["lsattr", str(log)], capture_output=True, text=True).stdout.split()[0]
    shown = as_user(user, installed.middock, "audit", "audited-app", "--json")
    assert [entry["command"] for entry in json.loads(shown.stdout)] == ["lock"], shown.stdout
    old.unlink()


def test_without_the_edge_nothing_of_it_starts(installed):
    user = unique_user()
    try:
        result = run_install(user, installed.base, "--no-edge", source=installed.source)
        assert result.returncode == 0, result.stdout + result.stderr
        edge = json.loads(subprocess.run([installed.middock, "edge", "--json", "--user", user],
                                         capture_output=True, text=True).stdout)  # fmt: skip
        assert edge["running"] == {"haproxy": False, "caddy": False}
        assert not (Path(pwd.getpwnam(user).pw_dir) / ".middock" / "_edge" / "haproxy.pid").exists()
    finally:
        remove_user(user)


def test_the_deploy_user_has_no_password_that_logs_in(installed):
    """Even with password logins on in sshd, no password logs the deploy user in; a real
    password set afterwards does, which shows the attempts were real ones."""
    sshd = Sshd(
        installed.base / "sshd",
        installed.user,
        "PasswordAuthentication yes",
        "PermitEmptyPasswords yes",
        include=sshd_settings(installed.base),
    )
    askpass = installed.base / "askpass"
    askpass.write_text('#!/bin/sh\nprintf "%s\\n" "$TEST_PASSWORD"\n')
    askpass.chmod(0o755)

    def login(password: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["ssh", "-F", "/dev/null", "-p", str(sshd.port), "-o", f"UserKnownHostsFile={sshd.known_hosts}"]
            + ["-o", "PreferredAuthentications=password", "-o", "NumberOfPasswordPrompts=1"]
            + [f"{installed.user}@127.0.0.1", "true"],
            env={**os.environ, "SSH_ASKPASS": str(askpass), "SSH_ASKPASS_REQUIRE": "force", "TEST_PASSWORD": password},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
        )

    try:
        for password in ("", "*", "!", installed.user):
            refused = login(password)
            assert refused.returncode == 255 and "Permission denied" in refused.stderr, refused.stderr
        subprocess.run(["chpasswd"], input=f"{installed.user}:Control-pw-1\n", text=True, check=True)
        assert login("Control-pw-1").returncode == 0
    finally:
        subprocess.run(["usermod", "-p", "*", installed.user], check=True)
        sshd.stop()


def test_without_compose_v2_it_says_how_to_get_it_and_changes_nothing(tmp_path):
    """Debian 12 as install.sh sees it: Docker, but only Compose v1 in the package lists."""
    stubs, log = tmp_path / "bin", tmp_path / "apt-get.log"
    stubs.mkdir()
    for name, body in {
        "docker": '[ "$1" = compose ] && exit 1; exit 0',
        "docker-compose": "echo 1.29.2",
        "apt-cache": 'case "$2" in docker-compose) echo "Candidate: 1.29.2-3" ;; *) echo "Candidate: (none)" ;; esac',
        "apt-get": f'echo "$*" >> {log}',
    }.items():
        (stubs / name).write_text(f"#!/bin/sh\n{body}\n")
        (stubs / name).chmod(0o755)
    user = unique_user()
    env = {**os.environ, "PATH": f"{stubs}:/usr/sbin:/usr/bin:/sbin:/bin"}
    result = run_install(user, tmp_path, env=env)
    assert result.returncode == 1
    assert "has no Docker Compose v2 package" in result.stderr and "--compose-from-debian-13" in result.stderr
    assert log.read_text().splitlines() == ["update -qq"]
    assert not (tmp_path / "venv").exists()
    assert subprocess.run(["id", user], capture_output=True).returncode != 0


def test_refuses_to_run_without_root():
    result = subprocess.run(["runuser", "-u", "nobody", "--", str(ROOT / "install.sh")], capture_output=True, text=True)
    assert result.returncode == 1 and "must run as root" in result.stderr


@pytest.mark.parametrize(
    ("files", "mirror"),
    [
        (
            {
                "sources.list": "# a comment\ndeb-src http://src/debian bookworm main\n"
                "deb http://sec/debian-security bookworm-security main\n"
                "deb [signed-by=/k.gpg arch=amd64] http://mirror.local/debian/ bookworm main contrib\n"
            },
            "http://mirror.local/debian",
        ),
        (
            {
                "sources.list.d/debian.sources": "Types: deb\nURIs: http://sec.example/debian-security\n"
                "Suites: bookworm-security\n\nTypes: deb deb-src\nURIs: http://proxy:3142/debian\n"
                "Suites: bookworm bookworm-updates\nComponents: main\n"
            },
            "http://proxy:3142/debian",
        ),
        ({}, "http://deb.debian.org/debian"),
    ],
)
def test_compose_from_debian_13_asks_the_mirror_apt_already_uses(tmp_path, files, mirror):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    script = ROOT / "scripts" / "compose-from-debian-13.sh"
    found = subprocess.run(
        ["bash", str(script), "--print-mirror"],
        env={**os.environ, "APT_ETC": str(tmp_path)},
        capture_output=True,
        text=True,
    )
    assert found.stdout.strip() == mirror, found.stderr
