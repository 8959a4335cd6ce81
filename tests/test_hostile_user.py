"""A hostile deploy user: what the security review planted in the deploy user's home (links,
injected records, a heredoc's end, a PATH), then root's own commands, as they really run (a real
unprivileged user made by install.sh, root running `middock … --user`). Nothing outside the
home may change (a canary in a folder only root can enter), no code may run as root, and a
command that must fail says so in one line."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import textwrap
from pathlib import Path

import pytest
from support.apps import write_busybox_app
from support.install import Installed, owned_by_root
from support.middock import GIT_IDENTITY, one_line
from support.ports import free_port
from support.ssh_server import as_user, remove_user, run_install, unique_user, world_readable_dir

from middock_receiver.cli.swarm import trust

# A home of install.sh's deploy user takes middock's default ports: one worker runs these modules.
pytestmark = pytest.mark.xdist_group("default-ports")


@pytest.fixture(scope="module")
def deploy():
    """install.sh's deploy user, with --no-edge: the tests start the edge themselves."""
    installed = Installed(world_readable_dir("middock-hostile-"))
    try:
        installed.first = installed.install("--no-edge")
        yield installed
    finally:
        subprocess.run([installed.middock, "edge:stop", "--user", installed.user], capture_output=True)
        remove_user(installed.user)
        shutil.rmtree(installed.base, ignore_errors=True)


@pytest.fixture
def canary(tmp_path) -> Path:
    """A file path in a folder only root may enter: nothing the deploy user runs can write it."""
    folder = tmp_path / "root-only"
    folder.mkdir(mode=0o700)
    return folder / "canary"


def root_runs(deploy: Installed, *args: str) -> subprocess.CompletedProcess:
    """`middock ARGS --user USER` as root, from root's private folder (as an admin would)."""
    return subprocess.run(
        [deploy.middock, *args, "--user", deploy.user], capture_output=True, text=True, cwd=deploy.source, timeout=120
    )


def plant(deploy: Installed, path: Path, text: str) -> None:
    """What the deploy user writes in its own home (as itself)."""
    as_user(deploy.user, "mkdir", "-p", str(path.parent))
    as_user(deploy.user, "sh", "-c", 'printf "%s" "$1" > "$2"', "plant", text, str(path))


def test_what_root_does_as_the_user_cannot_take_root_back(deploy, canary):
    """A child of root's part that acts as the user has the user's real, effective and saved ids
    and groups, in its home: a program it starts cannot setuid(0)."""
    code = textwrap.dedent(
        """
        import json, os, pwd, subprocess, sys
        from middock_receiver.server import privileges
        def probe(canary):
            escape = "import os, sys; os.setuid(0); open(sys.argv[1], 'w').write('root')"
            child = subprocess.run([sys.executable, "-c", escape, canary], capture_output=True, text=True)
            return [os.getresuid(), os.getresgid(), os.getgroups(), os.getcwd(), child.returncode, child.stderr]
        print(json.dumps(privileges.as_user(pwd.getpwnam(sys.argv[1]), probe, sys.argv[2])))
        """
    )
    python = str(deploy.base / "venv" / "bin" / "python3")
    result = subprocess.run([python, "-I", "-c", code, deploy.user, str(canary)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    uids, gids, groups, cwd, escaped, why = json.loads(result.stdout)
    user = os.stat(deploy.home)
    assert uids == [user.st_uid] * 3 and gids == [user.st_gid] * 3 and 0 not in groups
    assert cwd == str(deploy.home)
    assert escaped != 0 and "PermissionError" in why and not canary.exists()


def test_an_injected_edge_record_is_refused_before_any_proxy_reads_it(deploy, canary):
    """A newline in a slot of edge.json once became a `lua-load` line of haproxy.cfg, which
    root's `haproxy -c` ran. Now the record is checked as it is read: the app is left off the
    edge (edge:start says why), its own commands fail with one line naming the file, and the
    edge goes on for the others."""
    as_user(deploy.user, deploy.middock, "apps:create", "evil")
    as_user(deploy.user, deploy.middock, "apps:set", "evil", "port", str(free_port()))
    lua = deploy.home / "evil.lua"
    plant(deploy, lua, f'io.open("{canary}", "w"):write("ran as root")\n')
    record = {"domains": [], "slots": {"blue": [f"127.0.0.1:20000\n    lua-load {lua}"]}, "serving": "blue"}
    plant(deploy, deploy.home / ".middock" / "evil" / "edge.json", json.dumps(record))
    for command in (["edge:set", f"http-port={free_port()}", f"https-port={free_port()}"], ["edge"]):
        assert root_runs(deploy, *command).returncode == 0
    started = root_runs(deploy, "edge:start")
    assert "evil: left off the edge" in started.stdout and "evil/edge.json is not a valid record" in started.stdout
    one_line(root_runs(deploy, "domains", "evil"), "evil/edge.json is not a valid record")
    root_runs(deploy, "edge:stop")
    assert not canary.exists()
    haproxy_cfg = deploy.home / ".middock" / "_edge" / "haproxy.cfg"
    assert not haproxy_cfg.exists() or "lua-load" not in haproxy_cfg.read_text()
    as_user(deploy.user, "rm", "-rf", str(deploy.home / ".middock" / "evil"), str(deploy.home / "evil.git"))
    assert owned_by_root(deploy.home) == []


def test_the_join_script_reads_no_file_the_user_points_at_and_takes_no_shell_text(deploy):
    swarm = deploy.home / ".middock" / "_swarm"
    record = {"advertise_addr": "10.0.0.2", "registry": "10.0.0.2:5000", "own_registry": False}
    plant(deploy, swarm / "cluster.json", json.dumps({**record, "registry_ca": "/etc/shadow"}))
    shadow = root_runs(deploy, "nodes:join-script")
    one_line(shadow, "is not a file of")
    assert "root:" not in shadow.stdout
    ca = "-----BEGIN CERTIFICATE-----\nQUJD\n-----END CERTIFICATE-----\nCERTIFICATE\ntouch /tmp/pwned\n"
    plant(deploy, swarm / "registry-ca.crt", ca)
    plant(deploy, swarm / "cluster.json", json.dumps({**record, "registry_ca": str(swarm / "registry-ca.crt")}))
    one_line(root_runs(deploy, "nodes:join-script"), "not a PEM certificate")
    as_user(deploy.user, "rm", "-rf", str(swarm))


def test_root_writes_nothing_through_a_planted_link(deploy, canary, tmp_path):
    """The edge's lock and its proxies' logs are the user's files: planted as links to a file
    only root may write, they fail the command (one line), and the file stays as it was."""
    edge = deploy.home / ".middock" / "_edge"
    as_user(deploy.user, "mkdir", "-p", str(edge / "logs"))
    as_user(deploy.user, "ln", "-sfn", str(canary), str(edge / "edge.lock"))
    one_line(root_runs(deploy, "edge:set", f"https-port={free_port()}"), "edge.lock")
    as_user(deploy.user, "rm", str(edge / "edge.lock"))
    as_user(deploy.user, "ln", "-sfn", str(canary), str(edge / "logs" / "haproxy.log"))
    started = root_runs(deploy, "edge:start")
    assert started.returncode != 0 and not canary.exists(), started.stdout + started.stderr
    as_user(deploy.user, "rm", str(edge / "logs" / "haproxy.log"))
    root_runs(deploy, "edge:stop")
    # swarm:init's part as root: the registry's CA goes into Docker's trust, never through a link
    certs = tmp_path / "certs.d"
    (certs / "10.0.0.2:5000").mkdir(parents=True)
    (certs / "10.0.0.2:5000" / "ca.crt").symlink_to(canary)
    with pytest.raises(OSError):
        trust(certs, "10.0.0.2:5000", "-----BEGIN CERTIFICATE-----\nQUJD\n-----END CERTIFICATE-----\n")
    assert not canary.exists() and owned_by_root(deploy.home) == []


def test_install_changes_no_account_it_did_not_create(deploy, tmp_path):
    """An existing account (`ubuntu`, say) keeps its password, shell and groups: install.sh
    refuses it in one line before installing anything; --adopt-user takes it, password kept."""
    user = unique_user()
    subprocess.run(["useradd", "--create-home", "--shell", "/bin/bash", user], check=True)
    try:
        subprocess.run(["chpasswd"], input=f"{user}:Their-own-pw-1\n", text=True, check=True)
        home = Path(f"/home/{user}")
        home.chmod(0o755)
        before = (Path("/etc/shadow").read_text(), subprocess.run(["id", "-nG", user], capture_output=True).stdout)
        refused = run_install(user, tmp_path)
        one_line(refused, "--adopt-user")
        assert not (tmp_path / "venv").exists()
        assert (
            Path("/etc/shadow").read_text(),
            subprocess.run(["id", "-nG", user], capture_output=True).stdout,
        ) == before
        one_line(run_install("root", tmp_path), "cannot be root")
        adopted = run_install(user, deploy.base, "--adopt-user", "--no-edge", source=deploy.source)
        assert adopted.returncode == 0, adopted.stdout + adopted.stderr
        password = next(line for line in Path("/etc/shadow").read_text().splitlines() if line.startswith(f"{user}:"))
        assert password in before[0]  # the same hash: its own password still logs in
        groups = subprocess.run(["id", "-nG", user], capture_output=True, text=True).stdout.split()
        assert "middock" in groups and "docker" not in groups  # its own rootless daemon: a deploy key is not root
        assert stat.S_IMODE(home.stat().st_mode) & 0o007 == 0
    finally:
        remove_user(user)


EVIL_DOCKER = '#!/bin/sh\necho "$0 ran" > {canary}\nexit 1\n'


def test_an_app_cannot_change_the_programs_middock_runs(server, work, app, tmp_path):
    """PATH in middock.env (a fake docker first) is ignored with a warning; config:set refuses
    PATH and LD_PRELOAD in one line; PYTHONPATH of a pusher reaches neither the hook nor the
    worker (isolated Python); the files that hold secrets are 0600."""
    evil, canary = tmp_path / "evil", tmp_path / "canary"
    evil.mkdir()
    (evil / "docker").write_text(EVIL_DOCKER.format(canary=canary))
    (evil / "docker").chmod(0o755)
    (evil / "sitecustomize.py").write_text(f"open({str(canary)!r}, 'w').write('python ran it')\n")
    write_busybox_app(work, free_port())
    work.write("middock.env", f"PATH={evil}:/usr/sbin:/usr/bin:/sbin:/bin\nLD_PRELOAD=/nonexistent.so\n")
    work.commit("hostile settings")
    work.env["PYTHONPATH"] = str(evil)
    pushed = work.push()
    assert "is live" in pushed.stderr, pushed.stderr
    assert "PATH, LD_PRELOAD in middock.env ignored" in pushed.stderr, pushed.stderr
    assert not canary.exists(), canary.read_text()
    for key in ("PATH", "LD_PRELOAD", "DOCKER_HOST", "COMPOSE_PROJECT_NAME", "PYTHONPATH", "MIDDOCK_HOME"):
        refused = server.middock("config:set", app, f"{key}={evil}", check=False)
        one_line(refused, f"{key} cannot be a config var")
    server.middock("config:set", app, "COMPOSE_PROFILES=web", "--no-deploy")  # Compose's own choices stay the app's
    release = server.home / ".middock" / app / "releases" / "1"
    for path in (release / "compose.json", release / "env", release / "checkout" / ".env"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    hook = (server.repo_path(app) / "hooks" / "post-receive").read_text()
    assert '"$MIDDOCK_PYTHON" -I -m middock_receiver.push.hook' in hook


def test_root_pushing_into_the_users_repository_deploys_as_the_user(deploy, tmp_path):
    """git runs the hook as whoever pushes; root pushing straight into ~deploy/APP.git (git
    refuses unless told the folder is safe) must not make the deploy root's: the hook becomes the
    repository's owner first."""
    as_user(deploy.user, deploy.middock, "apps:create", "rootpush")
    work = tmp_path / "work"
    work.mkdir()
    for argv in (["init", "-q", "-b", "main"], ["commit", "-q", "--allow-empty", "-m", "empty"]):
        subprocess.run(["git", *argv], cwd=work, check=True, env={**os.environ, **GIT_IDENTITY})
    gitconfig = tmp_path / "gitconfig"
    gitconfig.write_text("[safe]\n\tdirectory = *\n")  # what an admin would have to say
    pushed = subprocess.run(
        ["git", "push", str(deploy.home / "rootpush.git"), "main"],
        cwd=work,
        env={**os.environ, "GIT_CONFIG_GLOBAL": str(gitconfig)},
        capture_output=True,
        text=True,
    )
    assert "no compose file" in pushed.stderr, pushed.stderr  # the deploy ran, and failed as it should
    state = deploy.home / ".middock" / "rootpush"
    owner = os.stat(deploy.home).st_uid
    assert all(path.lstat().st_uid == owner for path in [state, *state.rglob("*")])
    as_user(deploy.user, deploy.middock, "apps:destroy", "rootpush", "--force")
