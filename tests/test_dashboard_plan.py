"""The dashboard's pure parts: one-time links, session cookies and CSRF tokens, a key's tunnel in
authorized_keys, the dashboard's route on the edge, its units and its words. The pages themselves,
in a real browser: test_dashboard.py."""

from __future__ import annotations

import time

import pytest

from middock_receiver.dashboard import display, sessions, units, views
from middock_receiver.edge import caddy
from middock_receiver.edge.settings import EdgePaths, EdgeSettings, parse_setting, write_settings
from middock_receiver.errors import MiddockError
from middock_receiver.server import keys, roles, ssh
from middock_receiver.server.daemons import Owner

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl alice@laptop"


def test_a_link_opens_one_session_once(tmp_path):
    token = sessions.issue_link(tmp_path, "alice")
    found = sessions.redeem(tmp_path, token)
    assert found is not None and found.key == "alice"
    assert found.expires > time.time() + sessions.SESSION_SECONDS - 60
    assert sessions.redeem(tmp_path, token) is None  # used
    assert list((sessions.folder(tmp_path) / "links").iterdir()) == []


def test_a_link_expires_after_two_minutes(tmp_path):
    token = sessions.issue_link(tmp_path, "alice", now=time.time() - sessions.LINK_SECONDS - 1)
    assert sessions.redeem(tmp_path, token) is None


@pytest.mark.parametrize("token", ["", "short", "x" * 500, "../../secret", "é" * 30])
def test_a_token_of_any_other_shape_opens_nothing(tmp_path, token):
    sessions.issue_link(tmp_path, "alice")
    assert sessions.redeem(tmp_path, token) is None


def test_the_links_folder_holds_hashes_never_the_token(tmp_path):
    token = sessions.issue_link(tmp_path, "alice")
    stored = [path.name + path.read_text() for path in (sessions.folder(tmp_path) / "links").iterdir()]
    assert stored and not any(token in text for text in stored)
    sessions.secret(tmp_path)
    assert oct((sessions.folder(tmp_path) / "secret").stat().st_mode & 0o777) == "0o600"


def test_a_cookie_is_the_session_only_while_signed_and_not_expired(tmp_path):
    session = sessions.Session("alice", time.time() + 60)
    cookie = sessions.cookie_value(tmp_path, session)
    assert sessions.session_of(tmp_path, cookie) == session
    body, signature = cookie.split(".")
    forged = sessions.cookie_value(tmp_path, sessions.Session("root", time.time() + 60)).split(".")[0]
    assert sessions.session_of(tmp_path, f"{forged}.{signature}") is None
    assert sessions.session_of(tmp_path, f"{body}.{'0' * 64}") is None
    assert sessions.session_of(tmp_path, cookie, now=time.time() + 61) is None
    for junk in (None, "", "a.b.c", "nodot"):
        assert sessions.session_of(tmp_path, junk) is None


@pytest.mark.parametrize("key", ["a", "ab", "abc", "rita-0a1b2c"])
def test_a_cookie_never_needs_quotes(tmp_path, key):
    """No `=` padding: Set-Cookie would quote the value, and the browser would keep the quotes."""
    cookie = sessions.cookie_value(tmp_path, sessions.Session(key, 1796682885.692583))
    assert "=" not in cookie and '"' not in cookie
    assert sessions.session_of(tmp_path, cookie, now=0) == sessions.Session(key, 1796682885.692583)


def test_logout_all_ends_every_session_csrf_token_and_link(tmp_path):
    cookie = sessions.cookie_value(tmp_path, sessions.Session("alice", time.time() + 60))
    csrf = sessions.csrf_token(tmp_path, cookie)
    token = sessions.issue_link(tmp_path, "bob")
    assert sessions.csrf_ok(tmp_path, cookie, csrf)
    sessions.logout_all(tmp_path)
    assert sessions.session_of(tmp_path, cookie) is None
    assert not sessions.csrf_ok(tmp_path, cookie, csrf)
    assert sessions.redeem(tmp_path, token) is None


def test_a_csrf_token_belongs_to_its_session(tmp_path):
    mine = sessions.cookie_value(tmp_path, sessions.Session("alice", time.time() + 60))
    theirs = sessions.cookie_value(tmp_path, sessions.Session("bob", time.time() + 60))
    assert not sessions.csrf_ok(tmp_path, mine, sessions.csrf_token(tmp_path, theirs))
    assert not sessions.csrf_ok(tmp_path, mine, "")
    assert not sessions.csrf_ok(tmp_path, None, sessions.csrf_token(tmp_path, mine))


def test_a_key_in_roots_file_may_forward_the_dashboards_port_and_nothing_else(tmp_path, monkeypatch):
    key = keys.parse_public_key(KEY, "alice")
    line = keys.render(key, 7800)
    assert 'permitopen="127.0.0.1:7800"' in line and "no-port-forwarding" not in line
    assert "no-pty" in line and "no-agent-forwarding" in line and "no-X11-forwarding" in line
    parsed = keys.parse_line(line).key
    assert parsed is not None and parsed.restricted and parsed.name == "alice"
    assert "no-port-forwarding" in keys.render(key)  # the user's own file: no sshd setting bounds it
    root_file = tmp_path / "authorized_keys" / "deploy"
    monkeypatch.setattr(keys, "ROOT_KEYS", root_file.parent)
    keys.add(root_file, key, 7801)
    assert 'permitopen="127.0.0.1:7801"' in root_file.read_text()
    own_file = tmp_path / "home" / ".ssh" / "authorized_keys"
    own_file.parent.parent.mkdir()
    keys.add(own_file, key, 7801)
    assert "permitopen" not in own_file.read_text() and "no-port-forwarding" in own_file.read_text()


def test_roles_of_the_dashboards_commands(tmp_path):
    reader = roles.Grant("dan", roles.READ)
    assert roles.refusal(reader, "dashboard") is None
    assert roles.refusal(reader, "dashboard:logout-all") is not None
    assert roles.changes("dashboard:logout-all") and not roles.changes("dashboard")
    with pytest.raises(MiddockError, match="only on the server"):
        ssh.route("dashboard:serve", tmp_path, {"dashboard:serve"}, roles.Grant("alice"))


def test_the_dashboard_domain_is_served_over_https_only(tmp_path):
    paths = EdgePaths(tmp_path)
    settings = EdgeSettings(dashboard="dash.example.org", dashboard_port=7811, https_port=8443)
    config = caddy.render(settings, paths, 19001)
    https = config["apps"]["http"]["servers"]["https"]["routes"][0]
    assert https["match"] == [{"host": ["dash.example.org"]}]
    assert https["handle"][0]["upstreams"] == [{"dial": "127.0.0.1:7811"}]
    http = config["apps"]["http"]["servers"]["http"]["routes"][0]
    assert http["handle"][0]["status_code"] == 308
    assert http["handle"][0]["headers"]["Location"] == ["https://dash.example.org:8443{http.request.uri}"]
    assert config["apps"]["tls"]["certificates"] == {"automate": ["dash.example.org"]}
    assert config["apps"]["tls"]["automation"]["policies"][0]["subjects"] == ["dash.example.org"]
    plain = caddy.render(EdgeSettings(), paths, 19001)
    assert "certificates" not in plain["apps"]["tls"] and len(plain["apps"]["http"]["servers"]["https"]["routes"]) == 1


def test_edge_set_refuses_a_dashboard_domain_without_https(tmp_path):
    paths = EdgePaths(tmp_path)
    write_settings(paths, {"tls": "off"})
    with pytest.raises(MiddockError, match="only over HTTPS"):
        write_settings(paths, {"dashboard": "dash.example.org"})
    assert parse_setting("dashboard", "off") == ("dashboard", "")
    with pytest.raises(MiddockError, match="invalid domain"):
        parse_setting("dashboard", "not a domain")


def test_the_units_listen_on_loopback_and_run_as_the_user(tmp_path):
    owner = Owner("deploy", 1001, 1001, tmp_path)
    socket_unit = units.render_socket(owner, 7800)
    assert "ListenStream=127.0.0.1:7800\n" in socket_unit
    service = units.render_service(owner, "/opt/middock/bin/python3")
    assert "User=deploy\n" in service and "Requires=middock-dashboard-deploy.socket\n" in service
    assert "ExecStart=/opt/middock/bin/python3 -I -m middock_receiver dashboard:serve\n" in service


def test_a_webhooks_address_is_shown_without_its_path_where_tokens_live():
    assert views.shown_url("https://hooks.slack.com/services/T000/B000/XXXX") == "https://hooks.slack.com/…"
    assert views.shown_url("https://example.org/?token=abc") == "https://example.org/…"
    assert views.shown_url("https://example.org/") == "https://example.org/"


def test_an_apps_row_in_words():
    release = {"number": 3, "commit": "abc1234", "subject": "Fix", "pusher": "alice", "started": time.time() - 90}
    row = {
        "name": "web",
        "state": "live",
        "live": {**release, "duration": 12.34, "result": "succeeded"},
        "health": "2/2 running",
        "urls": ["http://h:8000/"],
        "last": {**release, "duration": 12.34, "result": "succeeded"},
        "maintenance": False,
        "previews": 2,
        "next_cron": None,
    }
    shown = display.row(row)
    assert shown["live"] == "v3 abc1234 Fix"
    assert shown["last"] == "v3 by alice, 1 min ago in 12.3 s: succeeded"
    assert (shown["maintenance"], shown["previews"], shown["next_cron"]) == ("off", "2", "-")
    assert display.size(1536) == "1.5 KiB" and display.size(None) == "-"
