"""Keys' roles, checked without sshd: every command of the CLI has a role (a new command without
one fails here), each role may run exactly the commands issue 26 gives it, a refusal is one line
naming the key, its role and what it would need, and a key's role lives in its authorized_keys
line. The SSH end-to-end checks are in test_ssh.py."""

from __future__ import annotations

import dataclasses
import subprocess

import pytest

from middock_receiver.cli import load_all
from middock_receiver.errors import MiddockError
from middock_receiver.server import keys, roles

# The words: what `read` may look at, what `deploy` may also do; everything else is admin's.
READS = {
    *("git fetch", "apps", "status", "releases", "releases:output", "logs", "ps", "cron", "cron:runs"),
    *("previews", "notify", "domains", "config", "dashboard"),
}
DEPLOYS = {
    *("git push", "rollback", "config:set", "config:unset", "ps:restart", "ps:stop", "ps:start", "ps:scale"),
    *("run", "cron:run", "cron:suspend", "cron:resume", "maintenance:on", "maintenance:off"),
    *("deploy", "lock", "unlock", "previews:destroy", "notify:test"),
}
ANYONE = {"help", "version"}  # they show middock itself, nothing of an app
EVERY_COMMAND = sorted({*load_all(), "git fetch", "git push"})


def expected(command: str) -> str:
    if command in ANYONE:
        return roles.ANY
    return roles.READ if command in READS else roles.DEPLOY if command in DEPLOYS else roles.ADMIN


def test_every_command_has_a_role():
    """A command added to middock without a row in roles.RULES fails here, so none is ever let
    through, or refused, by accident."""
    assert sorted(set(EVERY_COMMAND) - set(roles.RULES)) == []
    assert sorted(set(roles.RULES) - set(EVERY_COMMAND)) == []


@pytest.mark.parametrize("command", EVERY_COMMAND)
@pytest.mark.parametrize("role", roles.ROLES)
def test_each_role_runs_exactly_its_commands(role, command):
    needed = expected(command)
    allowed = needed == roles.ANY or roles.ROLES.index(role) >= roles.ROLES.index(needed)
    refused = roles.refusal(roles.Grant("kim", role), command, ("shop",))
    if allowed:
        assert refused is None
    else:
        assert refused == f"refused: key kim has role {role}; {command} needs {needed}"


def test_config_values_need_deploy():
    reader = roles.Grant("rita", roles.READ)
    assert roles.refusal(reader, "config", ("shop",)) is None
    assert roles.refusal(reader, "config", ("shop",), reveal=True) == (
        "refused: key rita has role read; config --reveal needs deploy"
    )
    assert roles.refusal(roles.Grant("dan", roles.DEPLOY), "config", ("shop",), reveal=True) is None


def test_a_key_of_some_apps_is_refused_the_others_and_holds_their_previews():
    dan = roles.Grant("dan", roles.DEPLOY, ("shop", "blog"))
    assert roles.refusal(dan, "rollback", ("shop",)) is None
    assert roles.refusal(dan, "rollback", ("web",)) == (
        "refused: key dan has role deploy on shop, blog; rollback on web needs that app"
    )
    assert roles.refusal(dan, "logs", ("shop--feature", "shop")) is None  # a preview, and its parent
    assert roles.refusal(dan, "apps", ()) is None  # the listing shows only its apps
    assert roles.refusal(roles.Grant("root-ish"), "apps:destroy", ("web",)) is None  # admin: every app


@pytest.mark.parametrize("command", EVERY_COMMAND)
def test_what_changes_something_is_audited_and_what_only_looks_is_not(command):
    looks = expected(command) in (roles.ANY, roles.READ) or command in {
        *("audit", "keys:list", "cron:output", "maintenance", "edge", "networks", "nodes", "nodes:join-script"),
        "ssh-serve",  # the command it runs is recorded, not the session
        "dashboard:serve",  # what a page's action runs is recorded, as the session's key
    }
    assert roles.changes(command) is not looks


@pytest.fixture
def public_key(tmp_path) -> str:
    path = tmp_path / "k"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "dan@laptop", "-f", str(path)], check=True)
    return path.with_suffix(".pub").read_text()


def test_a_keys_role_and_apps_are_in_its_forced_command(public_key):
    key = keys.parse_public_key(public_key, "dan", roles.DEPLOY, ("shop", "blog"))
    line = keys.render(key)
    assert "ssh-serve --key dan --role deploy --apps shop,blog" in line
    assert keys.parse_line(line).key == dataclasses.replace(key, restricted=True)


def test_a_key_added_before_roles_is_admin(public_key):
    """A line middock wrote before roles (no --role) keeps everything it could do."""
    old = keys.render(keys.parse_public_key(public_key, "alice")).replace(" --role admin", "")
    key = keys.parse_line(old).key
    assert (key.name, key.role, key.apps, key.restricted) == ("alice", roles.ADMIN, (), False)


@pytest.mark.parametrize(
    "role, apps, says",
    [
        ("root", (), "unknown role 'root': use one of read, deploy, admin"),
        ("admin", ("shop",), "an admin key holds every app"),
        ("deploy", ("../x",), "invalid app name '../x'"),
        ("deploy", ("",), "invalid app name ''"),
    ],
)
def test_a_role_or_apps_middock_cannot_use_are_refused(public_key, role, apps, says):
    with pytest.raises(MiddockError, match=says):
        keys.parse_public_key(public_key, "dan", role, apps)


def test_a_line_with_a_role_middock_cannot_read_is_not_middocks(public_key):
    """A forced command edited by hand to an unknown role is listed as foreign, never as admin."""
    line = keys.render(keys.parse_public_key(public_key, "dan", roles.READ)).replace("--role read", "--role root")
    assert keys.parse_line(line).key.name is None


def test_keys_set_changes_role_and_apps(tmp_path, public_key):
    path = tmp_path / "authorized_keys"
    keys.add(path, keys.parse_public_key(public_key, "dan"))
    assert keys.set_grant(path, "dan", roles.DEPLOY, ("shop",)).grant == roles.Grant("dan", roles.DEPLOY, ("shop",))
    assert [(k.role, k.apps, k.restricted) for k in keys.listed(path)] == [(roles.DEPLOY, ("shop",), True)]
    keys.set_grant(path, "dan", roles.READ, ())
    assert [(k.role, k.apps) for k in keys.listed(path)] == [(roles.READ, ())]
    with pytest.raises(MiddockError, match="no key is named 'eve'"):
        keys.set_grant(path, "eve", roles.READ, ())
