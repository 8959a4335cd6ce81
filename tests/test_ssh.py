"""Pushing and running commands over SSH: install.sh's deploy user, a real sshd, real git and ssh.

The dispatcher and key rules are also tested on their own (pure functions, no sshd).
"""

from __future__ import annotations

import dataclasses
import json
import os
import pwd
import select
import shlex
import shutil
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from support.middock import ROOT, Workdir
from support.ports import free_port
from support.ssh_server import (
    SshClient,
    as_user,
    make_key,
    remove_user,
    unique_user,
    world_readable_dir,
)
from support.web import http_get

from middock_receiver.errors import MiddockError
from middock_receiver.server import account, keys, roles, ssh

# A home of install.sh's deploy user takes middock's default ports: one worker runs these modules.
pytestmark = pytest.mark.xdist_group("default-ports")

EXAMPLE = ROOT / "examples" / "hello"
COMMANDS = {"apps", "apps:create", "status", "keys:add", "keys:list", "ssh-serve", "refresh"}
ADMIN = roles.Grant("alice")  # a key added before roles, or with --role admin

# --- the dispatcher's rules ------------------------------------------------------------------


@pytest.mark.parametrize("path", ["myapp.git", "/myapp.git", "~/myapp.git", "myapp", "myapp.git/", "/srv/d/myapp.git"])
def test_repo_app_accepts_the_paths_git_clients_send(path):
    assert ssh.repo_app(path, Path("/srv/d")) == "myapp"


@pytest.mark.parametrize("path", ["../x", "../../etc", "/etc/passwd", "a/b.git", "", ".git", "~root/x.git", "My.git"])
def test_repo_app_refuses_anything_outside_the_apps(path):
    with pytest.raises(MiddockError, match="refused"):
        ssh.repo_app(path, Path("/srv/d"))


@pytest.mark.parametrize(
    "request_, says",
    [
        (None, "no shell"),
        ("", "no shell"),
        ("bash", "'bash' is not a middock command"),
        ("sh -c id", "'sh' is not a middock command"),
        ("/bin/sh", "not a middock command"),
        ("apps 'unbalanced", "cannot be parsed"),
        ("keys:add eve -", "only on the server"),
        ("ssh-serve --key root", "only on the server"),
        ("refresh", "only on the server"),
        ("git-upload-archive 'x.git'", "not a middock command"),
        ("git-receive-pack a.git b.git", "exactly one repository path"),
        ("git-receive-pack '../../etc'", "not an app's repository"),
    ],
)
def test_route_refuses(tmp_path, request_, says):
    with pytest.raises(MiddockError, match=says):
        ssh.route(request_, tmp_path, COMMANDS, ADMIN)


def test_route_runs_git_on_an_existing_app_and_middock_commands(tmp_path):
    (tmp_path / "web.git").mkdir()
    (tmp_path / ".middock" / "web").mkdir(parents=True)
    assert ssh.route("git-receive-pack '/web.git'", tmp_path, COMMANDS, ADMIN) == [
        "git",
        "receive-pack",
        str(tmp_path / "web.git"),
    ]
    fetch = ["git", "upload-pack", str(tmp_path / "web.git")]
    assert ssh.route("git-upload-pack 'web'", tmp_path, COMMANDS, ADMIN) == fetch
    assert ssh.route("status web --json", tmp_path, COMMANDS, ADMIN) == ["status", "web", "--json"]
    assert ssh.route("help", tmp_path, COMMANDS, ADMIN) == ["help", "--over-ssh"]
    assert ssh.route("help deploy", tmp_path, COMMANDS, ADMIN) == ["help", "--over-ssh", "deploy"]
    with pytest.raises(MiddockError, match="create it with: apps:create nope"):
        ssh.route("git-receive-pack 'nope.git'", tmp_path, COMMANDS, ADMIN)


def test_a_fetch_needs_read_and_a_push_needs_deploy_on_the_app(tmp_path):
    """A read key may clone its app and not push it; a deploy key of another app may do neither."""
    for name in ("web", "shop"):
        (tmp_path / f"{name}.git").mkdir()
        (tmp_path / ".middock" / name).mkdir(parents=True)
    reader, shop_deployer = roles.Grant("rita", roles.READ), roles.Grant("dan", roles.DEPLOY, ("shop",))
    assert ssh.route("git-upload-pack 'web.git'", tmp_path, COMMANDS, reader)[:2] == ["git", "upload-pack"]
    with pytest.raises(MiddockError, match="^refused: key rita has role read; git push needs deploy$"):
        ssh.route("git-receive-pack 'web.git'", tmp_path, COMMANDS, reader)
    assert ssh.route("git-receive-pack 'shop.git'", tmp_path, COMMANDS, shop_deployer)[:2] == ["git", "receive-pack"]
    elsewhere = "^refused: key dan has role deploy on shop; git fetch on web needs that app$"
    with pytest.raises(MiddockError, match=elsewhere):
        ssh.route("git-upload-pack 'web.git'", tmp_path, COMMANDS, shop_deployer)


# --- keys ----------------------------------------------------------------------------------


@pytest.fixture
def keypair(tmp_path) -> Path:
    return make_key(tmp_path, "alice@laptop")


def test_key_line_carries_forced_command_restrictions_and_name(tmp_path, keypair):
    key = keys.parse_public_key(keypair.with_suffix(".pub").read_text(), "alice")
    line = keys.render(key)
    assert line.startswith('command="') and " ssh-serve --key alice" in line
    assert "no-pty,no-port-forwarding,no-agent-forwarding,no-X11-forwarding" in line
    assert keys.parse_line(line).key == dataclasses.replace(key, restricted=True)
    fingerprint = subprocess.run(["ssh-keygen", "-lf", str(keypair)], capture_output=True, text=True).stdout.split()[1]
    assert key.fingerprint == fingerprint


def test_a_line_that_is_not_exactly_middocks_is_flagged(keypair):
    """keys:list calls a key restricted only when its line is byte for byte what middock writes:
    a forced command that merely mentions ssh-serve, or a missing restriction, is not."""
    key = keys.parse_public_key(keypair.with_suffix(".pub").read_text(), "alice")
    line = keys.render(key)
    planted = f'command="sh -c \\"exec sh\\" ssh-serve --key alice",no-pty {key.type} {key.blob} {key.comment}'
    for text in (planted, line.replace("no-pty,", ""), line + " ", line.replace("-I -m", "-m")):
        parsed = keys.parse_line(text).key
        assert parsed is not None and parsed.name == "alice" and not parsed.restricted, text


def test_public_key_input_is_checked(keypair):
    public = keypair.with_suffix(".pub").read_text()
    for text, says in [
        (keypair.read_text(), "private key"),
        (public + public, "exactly one"),
        ("ssh-ed25519 not-base64!", "does not decode"),
        (public.replace("ssh-ed25519", "ssh-rsa", 1), "not a ssh-rsa key"),
        ("hello world", "not an SSH public key"),
    ]:
        with pytest.raises(MiddockError, match=says):
            keys.parse_public_key(text, "alice")
    with pytest.raises(MiddockError, match="invalid key name"):
        keys.parse_public_key(public, "al ice")


def test_add_is_idempotent_refuses_clashes_and_keeps_foreign_lines(tmp_path, keypair):
    path = tmp_path / "ssh" / "authorized_keys"
    other = make_key(tmp_path, "other").with_suffix(".pub").read_text()
    path.parent.mkdir()
    path.write_text(f"# a comment\n{other}")
    alice = keys.parse_public_key(keypair.with_suffix(".pub").read_text(), "alice")
    assert keys.add(path, alice) is True
    assert keys.add(path, alice) is False
    with pytest.raises(MiddockError, match="already authorized as 'alice'"):
        keys.add(path, keys.parse_public_key(keypair.with_suffix(".pub").read_text(), "bob"))
    with pytest.raises(MiddockError, match="different key is named 'alice'"):
        keys.add(path, keys.parse_public_key(make_key(tmp_path, "x").with_suffix(".pub").read_text(), "alice"))
    with pytest.raises(MiddockError, match="without middock's restrictions"):
        keys.add(path, keys.parse_public_key(other, "other"))
    assert [(k.name, k.comment) for k in keys.listed(path)] == [(None, "other"), ("alice", "alice@laptop")]
    assert path.read_text().startswith(f"# a comment\n{other}")
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    keys.remove(path, "alice")
    assert [k.name for k in keys.listed(path)] == [None]
    with pytest.raises(MiddockError, match="no key is named 'alice'"):
        keys.remove(path, "alice")


@pytest.fixture
def throwaway_user(tmp_path):
    """A user with a home of its own, gone afterwards."""
    user = unique_user()
    home = world_readable_dir("middock-keys-") / user
    subprocess.run(["useradd", "--create-home", "--home-dir", str(home), user], check=True)
    yield pwd.getpwnam(user)
    remove_user(user)
    shutil.rmtree(home.parent, ignore_errors=True)


def test_root_takes_the_users_keys_into_a_file_the_user_may_read_and_not_write(
    throwaway_user, keypair, tmp_path, monkeypatch
):
    """`refresh --root-keys` (install.sh): root's copy of the user's keys, root-owned and 0644
    in a root folder; from then on it is the record keys:* write and the dispatcher reads."""
    monkeypatch.setattr(keys, "ROOT_KEYS", tmp_path / "etc" / "authorized_keys")
    own = account.home_keys(throwaway_user)
    own.parent.mkdir(mode=0o700)
    os.chown(own.parent, throwaway_user.pw_uid, throwaway_user.pw_gid)
    dan = keys.parse_public_key(keypair.with_suffix(".pub").read_text(), "dan", roles.DEPLOY, ("shop",))
    own.write_text(f"# the user's comment\n{keys.render(dan)}\n")
    os.chown(own, throwaway_user.pw_uid, throwaway_user.pw_gid)
    assert account.authorized_keys(throwaway_user) == own
    assert account.take_keys(throwaway_user) is True
    root = account.root_keys(throwaway_user)
    assert account.authorized_keys(throwaway_user) == root
    assert (root.stat().st_uid, oct(root.stat().st_mode & 0o777)) == (0, "0o644")
    assert [(k.name, k.role, k.apps, k.restricted) for k in keys.listed(root)] == [("dan", "deploy", ("shop",), True)]
    assert account.take_keys(throwaway_user) is False  # once: root's file is the record now
    keys.set_grant(root, "dan", roles.READ, ())
    assert (root.stat().st_uid, oct(root.stat().st_mode & 0o777)) == (0, "0o644")


def test_root_never_copies_what_a_symlink_in_the_home_points_at(throwaway_user, tmp_path, monkeypatch):
    """The user's keys file is read as the user: a link to a root-only file is not followed by root."""
    monkeypatch.setattr(keys, "ROOT_KEYS", tmp_path / "etc" / "authorized_keys")
    secret = tmp_path / "root-only"
    secret.write_text("a secret of root's\n")
    secret.chmod(0o600)
    account.home_keys(throwaway_user).parent.mkdir()
    os.chown(account.home_keys(throwaway_user).parent, throwaway_user.pw_uid, throwaway_user.pw_gid)
    account.home_keys(throwaway_user).symlink_to(secret)
    with pytest.raises(MiddockError, match="Permission denied"):
        account.take_keys(throwaway_user)
    assert not account.root_keys(throwaway_user).exists()


# --- over a real sshd (the session's `deployment`: support/deployment.py) ----------------------


@pytest.fixture(scope="module")
def pushed(deployment, tmp_path_factory):
    """The example app, created and pushed over ssh:// by alice: (app, its port on the edge, work tree)."""
    app, port = deployment.new_app(), free_port()
    configured = deployment.alice.run("apps:set", app, "port", str(port))
    assert configured.returncode == 0, configured.stderr
    work, push = deployment.push_example(app, tmp_path_factory.mktemp("work") / "hello")
    return app, port, work, push


def test_push_over_ssh_deploys_the_example_with_heroku_output(pushed):
    app, port, _, push = pushed
    assert push.returncode == 0, push.stderr
    assert "remote: -----> Running docker/build-1-app.sh" in push.stderr
    assert (
        "remote: -----> Release 1 " in push.stderr
        and "is live at http://" in push.stderr
        and f":{port}/" in push.stderr
    )
    page = http_get(port)
    assert "<h1>Hello from middock</h1>" in page and "release 1" in page
    assert "color" in http_get(port, "/static/style.css")


def test_status_releases_and_logs_over_ssh_name_the_pushing_key(deployment, pushed):
    app = pushed[0]
    status = deployment.alice.run("status", app)
    assert status.returncode == 0, status.stderr
    assert "by alice" in status.stdout and "frontend" in status.stdout
    releases = json.loads(deployment.alice.run("releases", app, "--json").stdout)
    assert releases[0]["pusher"] == "alice"
    assert "alice" in deployment.alice.run("releases", app).stdout
    logs = deployment.alice.run("releases:output", app)
    assert logs.returncode == 0 and "-----> Running docker/build-0-base.sh" in logs.stdout
    assert app in deployment.bob.run("apps").stdout


def test_a_command_over_ssh_records_its_key_as_pusher(deployment, pushed):
    app = pushed[0]
    redeploy = deployment.bob.run("config:set", app, "SET_BY=bob")
    assert redeploy.returncode == 0, redeploy.stdout + redeploy.stderr
    lines = redeploy.stdout.splitlines()
    assert lines[0].startswith("-----> Config saved; redeploying") and "is live" in lines[-1]
    releases = json.loads(deployment.bob.run("releases", app, "--json").stdout)
    assert [r["pusher"] for r in releases][-1] == "bob"


def test_push_output_streams_live_over_ssh(deployment, pushed):
    """A build script waits until the test has seen its first line: output held back to the end
    would leave it waiting forever (the push would time out)."""
    app, port, work, _ = pushed
    go = Path(f"/tmp/middock-go-{uuid.uuid4().hex[:8]}")
    work.write(
        "docker/build-9-wait.sh",
        f"#!/bin/sh\necho waiting for the test\nwhile [ ! -e {go} ]; do sleep 0.1; done\n",
        True,
    )
    work.write("middock.env", (EXAMPLE / "middock.env").read_text().replace("Hello from middock", "Hello again"))
    work.commit("wait for the test")
    push = subprocess.Popen(
        ["git", "push", "production", "main"], cwd=work.path, env=work.env, stderr=subprocess.PIPE, text=True
    )
    seen = []
    try:
        assert push.stderr is not None
        for line in push.stderr:
            seen.append(line)
            if "waiting for the test" in line:
                go.touch()
        assert push.wait(timeout=300) == 0, "".join(seen)
    finally:
        go.touch()
        push.kill()
        go.unlink()
        work.git("rm", "-q", "docker/build-9-wait.sh")  # the work tree's next pushes (other tests') wait for none
        work.commit("no more waiting")
    assert any("is live" in line for line in seen)
    assert "Hello again" in http_get(port)


@pytest.mark.parametrize("path", ["{app}.git", "{app}", "~/{app}.git"])
def test_clone_with_the_path_forms_git_clients_send(deployment, pushed, tmp_path, path):
    app = pushed[0]
    clone = subprocess.run(
        [
            "git",
            "clone",
            "-q",
            "-b",
            "main",
            f"{deployment.user}@127.0.0.1:{path.format(app=app)}",
            str(tmp_path / "c"),
        ],
        env={**os.environ, "GIT_SSH_COMMAND": f"{deployment.alice.git_ssh_command} -p {deployment.sshd.port}"},
        capture_output=True,
        text=True,
    )
    assert clone.returncode == 0, clone.stderr
    assert (tmp_path / "c" / "compose.yaml").is_file()


@pytest.mark.parametrize(
    "request_",
    [
        "bash",
        "sh -c id",
        "touch {marker}",
        "sh -c 'touch {marker}'",
        "git-receive-pack '../../etc'",
        "git-upload-pack '/etc/passwd'",
        "git-receive-pack 'nope.git'",
        "keys:list",
        "edge:stop",
        "edge:set http-port=1",
    ],
)
def test_refused_with_one_line_and_nothing_run(deployment, request_):
    marker = Path(f"/tmp/middock-marker-{uuid.uuid4().hex[:8]}")
    result = deployment.alice.run(request_.format(marker=marker))
    assert result.returncode != 0
    assert len(result.stderr.splitlines()) == 1 and result.stderr.startswith(" !     "), result.stderr
    assert result.stdout == ""
    assert not marker.exists()


def listed(help_text: str) -> dict[str, str]:
    """The commands a `help` listing names, each with what it says the command does."""
    rows = [line.split(None, 1) for line in help_text.splitlines() if line.startswith("  ")]
    return {row[0]: row[1] if len(row) > 1 else "" for row in rows}


def test_scheduled_jobs_over_ssh_in_the_deploy_users_crontab(deployment, pushed):
    """The example's middock.cron is in the deploy user's own crontab; over SSH, `cron` lists the
    job, `cron:run` streams its output and passes its exit code, `cron:runs` records it."""
    app = pushed[0]
    table = as_user(deployment.user, "crontab", "-l")
    assert table.returncode == 0 and f"cron:run {app} greet --scheduled" in table.stdout, table.stderr
    listed = deployment.alice.run("cron", app)
    assert listed.returncode == 0 and "greet" in listed.stdout and "@hourly" in listed.stdout, listed.stderr
    ran = deployment.alice.run("cron:run", app, "greet")
    assert ran.returncode == 0 and ran.stdout.endswith("from the hourly job\n"), ran.stdout + ran.stderr
    runs = json.loads(deployment.alice.run("cron:runs", app, "--json").stdout)
    assert [(r["job"], r["trigger"], r["result"]) for r in runs] == [("greet", "cron:run", "succeeded")]
    missing = deployment.alice.run("cron:run", app, "nosuch")
    assert missing.returncode != 0 and missing.stderr.count("\n") == 1


def test_a_branch_pushed_over_ssh_gets_a_preview_the_deploy_user_owns(deployment, pushed):
    """As the deploy user, through sshd: a branch's preview goes live at its own port (the
    example's hourly job is not scheduled for it), is listed, refuses pushes of its own, and
    goes when the branch is deleted; nothing of it belongs to root."""
    app, port, work, _ = pushed
    assert deployment.alice.run("apps:set", app, "previews", "on").returncode == 0
    work.git("checkout", "-q", "-b", "feature/ssh")
    try:
        work.git("rm", "-q", "--ignore-unmatch", "docker/build-9-wait.sh")  # another test's, waiting for it
        work.write("templates/extra.txt", "a preview")
        work.commit("a branch")
        pushed_branch = work.push("feature/ssh")
        preview = f"{app}--feature-ssh"
        assert f"Creating preview {preview}" in pushed_branch.stderr, pushed_branch.stderr
        assert "is live at http://" in pushed_branch.stderr and "no jobs for a preview" in pushed_branch.stderr
        listed = json.loads(deployment.alice.run("previews", app, "--json").stdout)
        assert [(row["name"], row["branch"]) for row in listed] == [(preview, "feature/ssh")], listed
        preview_port = int(listed[0]["url"].rstrip("/").rsplit(":", 1)[1])
        assert preview_port != port and "<h1>Hello" in http_get(preview_port)
        table = as_user(deployment.user, "crontab", "-l").stdout
        assert f"cron:run {app} greet" in table and f"cron:run {preview} " not in table, table
        state = Path(pwd.getpwnam(deployment.user).pw_dir) / ".middock" / preview
        assert {path.stat().st_uid for path in [state, *state.rglob("*")]} == {pwd.getpwnam(deployment.user).pw_uid}
        direct = deployment.alice.run("git-receive-pack", f"{preview}.git")
        assert direct.returncode != 0 and f"push its branch to {app}.git" in direct.stderr, direct.stderr

        deleted = work.push("--delete", "feature/ssh")
        assert f"Destroyed preview {preview}" in deleted.stderr, deleted.stderr
        assert json.loads(deployment.alice.run("previews", app, "--json").stdout) == []
        assert "<h1>Hello" in http_get(port)
    finally:
        work.git("checkout", "-q", "main")
        deployment.alice.run("apps:set", app, "previews", "off")


def test_help_locally_and_over_ssh(deployment):
    """`help` lists every command with what it does, locally (as the deploy user) and over SSH,
    where the commands that run only on the server are left out; `help COMMAND` and
    `COMMAND --help` show a command's options both ways; an unknown word is one line, non-zero."""
    local = as_user(deployment.user, deployment.middock, "help")
    remote = deployment.alice.run("help")
    assert remote.returncode == 0 and remote.stderr == "", remote.stderr
    here, there = listed(local.stdout), listed(remote.stdout)
    everywhere = {"apps", "apps:create", "apps:destroy", "deploy", "rollback", "status", "config:set", "run", "logs"}
    server_only = {"edge", "edge:start", "edge:set", "keys:add", "refresh", "swarm:init"}
    assert everywhere <= set(there) and everywhere | server_only <= set(here), (here, there)
    assert not server_only & set(there) and set(there) <= set(here)
    assert all(there.values()) and all(here.values())
    assert "ssh-serve" not in here and "ssh-serve" not in there

    options = [
        as_user(deployment.user, deployment.middock, "help", "deploy"),
        as_user(deployment.user, deployment.middock, "deploy", "--help"),
        deployment.alice.run("help", "deploy"),
        deployment.alice.run("deploy", "--help"),
    ]
    for shown in options:
        assert shown.returncode == 0, shown.stderr
        usage = shown.stdout.splitlines()[0]
        assert usage.startswith("usage: ") and " deploy " in usage and "ref" in usage, shown.stdout
        assert here["deploy"] in shown.stdout
    # `help deploy` is `deploy --help`, on each side
    assert options[0].stdout == options[1].stdout and options[2].stdout == options[3].stdout, options

    for refused in (
        as_user(deployment.user, deployment.middock, "help", "nope", check=False),
        as_user(deployment.user, deployment.middock, "nope", check=False),
        deployment.alice.run("help", "nope"),
        deployment.alice.run("help", "edge:start"),
    ):
        assert refused.returncode != 0 and refused.stdout == "", refused.stdout
        assert len(refused.stderr.splitlines()) == 1 and refused.stderr.startswith(" !     "), refused.stderr


@pytest.mark.parametrize("protocol", [(), ("-O",)])  # SFTP (the default), the old scp protocol
def test_scp_is_refused(deployment, tmp_path, protocol):
    target = Path(f"/tmp/middock-scp-{uuid.uuid4().hex[:8]}")
    (tmp_path / "file").write_text("x")
    scp = ["scp", *deployment.alice.options, *protocol, "-P", str(deployment.sshd.port), str(tmp_path / "file")]
    result = subprocess.run([*scp, f"{deployment.alice.destination}:{target}"], capture_output=True, text=True)
    assert result.returncode != 0 and not target.exists()


def test_push_to_an_unknown_app_says_how_to_create_it(deployment, tmp_path):
    work = Workdir(tmp_path / "w")
    work.commit("empty")
    work.env["GIT_SSH_COMMAND"] = deployment.alice.git_ssh_command
    work.git("remote", "add", "production", deployment.alice.url("nope.git"))
    push = work.push()
    assert push.returncode != 0
    assert "app 'nope' does not exist; create it with: apps:create nope" in push.stderr


def test_no_pty(deployment):
    """`ssh -tt` insists on a terminal: sshd refuses it, and the client gives up; nothing ran."""
    marker = Path(f"/tmp/middock-marker-{uuid.uuid4().hex[:8]}")
    result = deployment.alice.run("touch", str(marker), options=("-tt",))
    assert "PTY allocation request failed" in result.stderr
    assert result.returncode != 0 and not marker.exists()


def test_no_port_forwarding(deployment):
    """`ssh -L` to a listening port: sshd refuses the channel, the target never sees a connection."""
    target = socket.socket()
    target.bind(("127.0.0.1", 0))
    target.listen()
    target.settimeout(3)
    local = free_port()
    forward = subprocess.Popen(
        deployment.alice.argv(options=("-N", "-L", f"{local}:127.0.0.1:{target.getsockname()[1]}")),
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        received = b""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", local), timeout=5) as conn:
                    conn.sendall(b"hello")
                    received = conn.recv(100)
                    break
            except OSError:
                time.sleep(0.1)
        try:
            target.accept()[0].close()
            accepted = True
        except TimeoutError:
            accepted = False
        assert received == b"" and not accepted
    finally:
        forward.terminate()
        stderr = forward.communicate(timeout=10)[1]
        target.close()
    assert "administratively prohibited" in stderr


def test_a_removed_key_is_locked_out(deployment, tmp_path):
    carol = make_key(tmp_path, "carol")
    deployment.root_middock("keys:add", "carol", str(carol.with_suffix(".pub")))
    client = SshClient(deployment.sshd, deployment.user, carol)
    assert client.run("apps").returncode == 0
    listed = json.loads(deployment.root_middock("keys:list", "--json").stdout)
    assert {k["name"] for k in listed} >= {"alice", "bob", "carol"} and all(k["restricted"] for k in listed)
    deployment.root_middock("keys:remove", "carol")
    denied = client.run("apps")
    assert denied.returncode == 255 and "Permission denied" in denied.stderr


def test_run_over_ssh_passes_stdin_stdout_stderr_and_the_exit_code(deployment, pushed):
    """`echo data | ssh deploy@host run APP app …`: no pty, the one-off reads the piped stdin."""
    app = pushed[0]
    code = "import sys; print(sys.stdin.read().upper(), end=''); print('to stderr', file=sys.stderr); sys.exit(4)"
    request = shlex.join(["run", app, "app", "python3", "-c", code])
    ran = subprocess.run(
        deployment.alice.argv(request), input="data\nmore\n", capture_output=True, text=True, timeout=120
    )
    assert (ran.returncode, ran.stdout) == (4, "DATA\nMORE\n"), ran.stderr
    assert "to stderr" in ran.stderr
    missing = deployment.alice.run("run", app, "nosuch", "true")
    assert missing.returncode == 1 and missing.stdout == ""
    assert len(missing.stderr.splitlines()) == 1, missing.stderr
    assert missing.stderr.startswith(f" !     {app} has no service 'nosuch' in release ")


def serving_processes(user: str) -> list[str]:
    """The deploy user's processes still serving an SSH session (the forced command's)."""
    found = subprocess.run(["pgrep", "-u", user, "-f", "ssh-serve"], capture_output=True, text=True)
    return found.stdout.split()


def test_logs_follow_over_ssh_ends_when_the_client_goes_away(deployment, pushed):
    app, port = pushed[:2]
    client = subprocess.Popen(
        deployment.alice.argv("logs", app, "-t", "--service", "frontend"),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert client.stdout is not None
    try:
        deadline = time.monotonic() + 60
        line = b""
        while b"GET /static/style.css" not in line and time.monotonic() < deadline:
            http_get(port, "/static/style.css")
            ready, _, _ = select.select([client.stdout], [], [], 0.5)
            if ready:
                line = client.stdout.readline()
        assert b" frontend: " in line and b"GET /static/style.css" in line, line
        assert serving_processes(deployment.user)
    finally:
        client.kill()
        client.wait()
    deadline = time.monotonic() + 15
    while serving_processes(deployment.user) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert serving_processes(deployment.user) == []


# --- roles and the audit log, over a real sshd ------------------------------------------------


@pytest.fixture(scope="module")
def role_keys(deployment, pushed, tmp_path_factory):
    """rita: a read key of every app; dan: a deploy key of the pushed app only."""
    folder = tmp_path_factory.mktemp("role-keys")
    app = pushed[0]
    made = {name: make_key(folder, name) for name in ("rita", "dan")}
    deployment.root_middock("keys:add", "rita", str(made["rita"].with_suffix(".pub")), "--role", "read")
    deployment.root_middock("keys:add", "dan", str(made["dan"].with_suffix(".pub")), "--role", "deploy", "--apps", app)
    return {name: SshClient(deployment.sshd, deployment.user, path) for name, path in made.items()}


def audit_lines(deployment) -> list[dict]:
    return json.loads(deployment.alice.run("audit", "-n", "1000", "--json").stdout)


def fingerprint(key: Path) -> str:
    return subprocess.run(["ssh-keygen", "-lf", str(key)], capture_output=True, text=True, check=True).stdout.split()[1]


def clone(client: SshClient, app: str, into: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["git", "clone", "-q", client.url(f"{app}.git"), str(into)],
        env={**os.environ, "GIT_SSH_COMMAND": client.git_ssh_command},
        capture_output=True,
        text=True,
        timeout=120,
    )


READ_KEY_MAY = ["apps", "status {app}", "releases {app}", "releases:output {app}", "logs {app} -n 5", "ps {app}"]
READ_KEY_MAY += ["cron {app}", "cron:runs {app}", "previews {app}", "notify {app}", "domains {app}", "config {app}"]
READ_KEY_MAY_NOT = {
    "config {app} --reveal": "config --reveal needs deploy",
    "lock {app}": "lock needs deploy",
    "rollback {app}": "rollback needs deploy",
    "ps:stop {app}": "ps:stop needs deploy",
    "config:set {app} X=1": "config:set needs deploy",
    "maintenance:on {app}": "maintenance:on needs deploy",
    "apps:create r-nope": "apps:create needs admin",
    "apps:destroy {app} --force": "apps:destroy needs admin",
    "domains:add {app} www.example.org": "domains:add needs admin",
    "audit": "audit needs admin",
}


def test_a_read_key_looks_and_clones_and_is_refused_the_rest_leaving_no_audit_line(
    deployment, pushed, role_keys, tmp_path
):
    """rita (read) sees everything of the app and clones it; whatever would change something
    is refused in one line naming her key, her role and the role it needs, and her whole
    session leaves the audit log and the app as they were."""
    app, port = pushed[0], pushed[1]
    rita = role_keys["rita"]
    before, releases = audit_lines(deployment), deployment.alice.run("releases", app, "--json").stdout
    page = http_get(port).split("<p>")[0]  # the page, without the container that answered
    for request in READ_KEY_MAY:
        looked = rita.run(request.format(app=app))
        assert looked.returncode == 0, f"{request}: {looked.stderr}"
    assert clone(rita, app, tmp_path / "c").returncode == 0
    assert (tmp_path / "c" / "compose.yaml").is_file()
    for request, needs in READ_KEY_MAY_NOT.items():
        refused = rita.run(request.format(app=app))
        assert (refused.returncode, refused.stdout) == (1, ""), request
        assert refused.stderr == f" !     refused: key rita has role read; {needs}\n", request
    work = Workdir(tmp_path / "rita")
    work.write("README.md", "rita was here\n")
    work.commit("rita's change")
    work.env["GIT_SSH_COMMAND"] = rita.git_ssh_command
    work.git("remote", "add", "production", rita.url(f"{app}.git"))
    push = work.push()
    assert push.returncode != 0 and "refused: key rita has role read; git push needs deploy" in push.stderr
    assert audit_lines(deployment) == before
    assert deployment.alice.run("releases", app, "--json").stdout == releases
    assert http_get(port).split("<p>")[0] == page


def test_a_deploy_key_pushes_its_app_and_is_refused_another(deployment, pushed, role_keys, tmp_path):
    """dan (deploy on one app) pushes a one-line change that goes live as his release, sets a
    config var; another app is refused to him, to push and to look at; the audit log names him
    with his key's fingerprint."""
    app, port, work, _ = pushed
    dan = role_keys["dan"]
    other = deployment.new_app()
    refused = dan.run("status", other)
    assert refused.stderr == f" !     refused: key dan has role deploy on {app}; status on {other} needs that app\n"
    assert [row["app"] for row in json.loads(dan.run("apps", "--json").stdout)] == [app]
    theirs = Workdir(tmp_path / "dan")
    shutil.copytree(work.path, theirs.path, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".git"))
    theirs.commit("dan's copy")
    theirs.env["GIT_SSH_COMMAND"] = dan.git_ssh_command
    theirs.git("remote", "add", "production", dan.url(f"{other}.git"))
    denied = theirs.push()
    assert denied.returncode != 0
    assert f"refused: key dan has role deploy on {app}; git push on {other} needs that app" in denied.stderr
    assert json.loads(deployment.alice.run("releases", other, "--json").stdout) == []

    work.env["GIT_SSH_COMMAND"] = dan.git_ssh_command
    work.git("remote", "set-url", "production", dan.url(f"{app}.git"))
    work.write("README.md", "one line from dan\n")
    commit = work.commit("dan's one-line change")
    pushed_by_dan = work.push()
    work.git("remote", "set-url", "production", deployment.alice.url(f"{app}.git"))
    work.env["GIT_SSH_COMMAND"] = deployment.alice.git_ssh_command
    assert pushed_by_dan.returncode == 0 and "is live" in pushed_by_dan.stderr, pushed_by_dan.stderr
    assert json.loads(dan.run("releases", app, "--json").stdout)[-1]["pusher"] == "dan"
    assert dan.run("config:set", app, "--no-deploy", "SET_BY=dan").returncode == 0
    assert "<h1>" in http_get(port)

    lines = [line for line in audit_lines(deployment) if line["actor"] == "dan"]
    dans = fingerprint(Path(str(dan.key) + ".pub"))
    assert [(line["command"], line["app"], line["result"], line["fingerprint"]) for line in lines] == [
        (f"push refs/heads/main {commit[:7]}", app, "ok", dans),
        ("config:set", app, "ok", dans),
    ]
    shown = deployment.alice.run("audit", app).stdout
    assert f"dan ({dans})  config:set  {app}  ok" in shown


def test_keys_list_shows_roles_and_keys_set_changes_them(deployment, role_keys, pushed):
    """keys:list: alice (added before, by install.sh) admin; rita read; dan deploy on one app.
    keys:set takes dan's deploy role away at once, and is in the audit log as root's."""
    app = pushed[0]
    listed = {
        key["name"]: (key["role"], key["apps"])
        for key in json.loads(deployment.root_middock("keys:list", "--json").stdout)
    }
    assert listed["alice"] == ("admin", []) and listed["rita"] == ("read", []) and listed["dan"] == ("deploy", [app])
    deployment.root_middock("keys:set", "dan", "--role", "read", "--apps", app)
    try:
        assert role_keys["dan"].run("lock", app).stderr == (
            f" !     refused: key dan has role read on {app}; lock needs deploy\n"
        )
    finally:
        deployment.root_middock("keys:set", "dan", "--role", "deploy", "--apps", app)
    last = audit_lines(deployment)[-2:]
    assert [(line["actor"], line["command"], line["result"]) for line in last] == [("root", "keys:set", "ok")] * 2
