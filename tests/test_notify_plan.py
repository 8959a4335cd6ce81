"""Deploy notifications without Docker or a network: the events' fields, body, signature and
text line, the URL and event rules, which addresses a webhook may reach (refused before any
connection), and the records in the app's state folder."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import stat

import pytest

from middock_receiver.errors import MiddockError
from middock_receiver.jobs.runs import FAILED as RUN_FAILED
from middock_receiver.jobs.runs import TIMED_OUT, Run
from middock_receiver.notify import addresses, delivery, events, webhooks
from middock_receiver.state.apps import App
from middock_receiver.state.releases import FAILED, SUCCEEDED, Release

COMMIT = "4f2a9c1e" + "0" * 32


def release(**fields) -> Release:
    base = {
        "number": 12,
        "commit": COMMIT,
        "ref": "refs/heads/main",
        "subject": "Fix login",
        "pusher": "alice",
        "started": 1_800_000_000.0,
        "finished": 1_800_000_021.43,
        "result": SUCCEEDED,
    }
    return Release(**{**base, **fields})


def test_a_deploy_event_names_the_release_and_where_it_is_live():
    event = events.release_event("shop", release(), "https://shop.example.org/")
    assert event == {
        "event": "deploy",
        "app": "shop",
        "release": 12,
        "kind": "deploy",
        "commit": COMMIT,
        "subject": "Fix login",
        "pusher": "alice",
        "url": "https://shop.example.org/",
        "duration": 21.4,
        "result": "succeeded",
        "error": None,
        "time": "2027-01-15T08:00:21Z",
        "text": "shop: release 12 (4f2a9c1 Fix login) is live at https://shop.example.org/, deployed by alice in 21.4s",
    }
    assert events.release_event("shop", release(), None)["text"] == (
        "shop: release 12 (4f2a9c1 Fix login) is live, deployed by alice in 21.4s"
    )


def test_rollbacks_restarts_and_failures():
    rollback = events.release_event("shop", release(number=13, kind="rollback to 10"), None)
    assert rollback["event"] == "rollback"
    assert (
        rollback["text"] == "shop: release 13 (4f2a9c1 Fix login), rollback to release 10, is live, by alice in 21.4s"
    )

    restart = events.release_event("shop", release(number=14, kind="restart of release 12"), None)
    assert restart["event"] == "deploy"
    assert "release 14 (4f2a9c1 Fix login), restart of release 12, is live" in restart["text"]

    message = "build script docker/build-web.sh failed with exit code 3; release 11 (1234567) is still serving"
    failed = events.release_event("shop", release(result=FAILED, message=message), "https://shop.example.org/")
    assert (failed["event"], failed["result"], failed["error"], failed["url"]) == ("failed", "failed", message, None)
    assert failed["text"] == f"shop: release 12 (4f2a9c1 Fix login) deploy by alice failed: {message}"

    failed_rollback = events.release_event("shop", release(kind="rollback to 10", result=FAILED, message="x"), None)
    assert failed_rollback["event"] == "failed"
    assert failed_rollback["text"] == "shop: release 12 (4f2a9c1 Fix login) rollback to release 10 by alice failed: x"


def test_the_text_line_is_inert_in_chat_and_short():
    loud = release(subject="<!channel> ping & <http://evil|click>", pusher="bob <b@x>")
    event = events.release_event("shop", loud, None)
    assert event["subject"] == "<!channel> ping & <http://evil|click>"  # the field as it is
    assert "<" not in event["text"] and ">" not in event["text"]
    assert "&lt;!channel&gt; ping &amp; &lt;http://evil|click&gt;" in event["text"]
    assert "deployed by bob &lt;b@x&gt;" in event["text"]

    long = events.release_event("shop", release(subject="x" * 200), None)
    assert long["subject"] == "x" * 200
    assert "(4f2a9c1 " + "x" * 71 + "…)" in long["text"]


def test_a_failed_or_timed_out_job():
    live = release()
    run = Run(number=7, job="nightly", trigger="schedule", release=12, started=100.0, finished=112.34)
    run.result, run.exit_code = RUN_FAILED, 3
    event = events.job_event("shop", live, run, None)
    assert {k: event[k] for k in ("event", "release", "commit", "job", "run", "exit_code", "result", "duration")} == {
        "event": "cron-failed",
        "release": 12,
        "commit": COMMIT,
        "job": "nightly",
        "run": 7,
        "exit_code": 3,
        "result": "failed",
        "duration": 12.3,
    }
    assert event["text"] == "shop: job nightly (run 7) failed with exit code 3 after 12.3s"

    run.result, run.exit_code = TIMED_OUT, 137
    assert events.job_event("shop", live, run, None)["text"] == (
        "shop: job nightly (run 7) timed out after 12.3s (MIDDOCK_CRON_TIMEOUT)"
    )
    run.result, run.exit_code = RUN_FAILED, None
    unstartable = events.job_event("shop", live, run, "no such image <x>")
    assert unstartable["error"] == "no such image <x>"
    assert unstartable["text"] == "shop: job nightly (run 7) failed: no such image &lt;x&gt;"


def test_the_test_event_before_and_after_a_deploy():
    before = events.test_event("shop", None, None, 0.0)
    assert (before["event"], before["release"], before["commit"], before["url"]) == ("test", None, None, None)
    assert before["text"] == "shop: test notification from middock (nothing is deployed yet)"
    after = events.test_event("shop", release(), "http://host:8000/", 0.0)
    assert after["release"] == 12 and after["commit"] == COMMIT
    assert after["text"] == "shop: test notification from middock (release 12 is live at http://host:8000/)"


def test_the_body_is_json_and_its_signature_verifies_with_hmac():
    event = events.release_event("shop", release(subject="Ünïcode ✓"), None)
    body = events.body(event)
    assert json.loads(body) == event
    secret = "ab" * 32
    header = events.signature(secret, body)
    assert header.startswith("sha256=")
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(header.removeprefix("sha256="), expected)
    assert events.signature(secret, body + b" ") != header


@pytest.mark.parametrize(
    "url",
    ["https://hooks.slack.com/services/T0/B0/x", "http://127.0.0.1:8080/hook?a=1&b=2", "http://[::1]:9000/"],
)
def test_http_and_https_urls_are_accepted(url):
    assert webhooks.check_url(url) == url


@pytest.mark.parametrize(
    "url",
    [
        "ftp://x",
        "x",
        "mailto:a@example.org",
        "http://",
        "https:///path",
        "http://host:99999/",
        "http://a b/",
        "http://[::1/",
    ],
)
def test_other_urls_are_refused(url):
    with pytest.raises(MiddockError, match="invalid webhook URL"):
        webhooks.check_url(url)


@pytest.mark.parametrize(
    "address, kind",
    [
        ("127.0.0.1", "loopback"),
        ("127.1.2.3", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("172.31.255.255", "private"),
        ("192.168.1.1", "private"),
        ("100.64.0.1", "shared (carrier-grade NAT)"),
        ("100.127.255.254", "shared (carrier-grade NAT)"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("fe80::1%lo", "link-local"),
        ("fc00::1", "unique local"),
        ("fd12:3456::1", "unique local"),
        ("fec0::1", "site-local"),  # deprecated, yet `is_global` in some Pythons
        ("0.0.0.0", "unspecified"),  # Linux connects it to the host itself
        ("::", "unspecified"),
        ("0.1.2.3", "reserved"),
        ("224.0.0.1", "multicast"),  # `is_global` says yes to multicast
        ("239.255.255.250", "multicast"),
        ("ff02::1", "multicast"),
        ("ff0e::1", "multicast"),
        ("255.255.255.255", "reserved"),
        ("240.0.0.1", "reserved"),
        ("192.0.2.1", "reserved"),  # documentation
        ("198.18.0.1", "reserved"),  # benchmarking
        ("2001:db8::1", "reserved"),
        ("3fff::1", "reserved"),
        ("100::1", "reserved"),  # discard
        ("::127.0.0.1", "reserved"),  # IPv4-compatible (deprecated)
        ("64:ff9b:1::a00:1", "reserved"),  # NAT64 for local use
        ("::ffff:127.0.0.1", "loopback (IPv4 127.0.0.1)"),
        ("::ffff:10.0.0.1", "private (IPv4 10.0.0.1)"),
        ("::ffff:169.254.169.254", "link-local (IPv4 169.254.169.254)"),
        ("64:ff9b::a00:1", "private (IPv4 10.0.0.1)"),  # NAT64
        ("2002:7f00:1::1", "loopback (IPv4 127.0.0.1)"),  # 6to4
        ("2002:a9fe:a9fe::", "link-local (IPv4 169.254.169.254)"),
        ("2001:0:4136:e378:8000:63bf:f57f:fffe", "private (IPv4 10.128.0.1)"),  # Teredo
    ],
)
def test_addresses_on_the_servers_own_network_are_refused(address, kind):
    assert addresses.refusal(address) == kind


@pytest.mark.parametrize(
    "address",
    [
        "93.184.215.14",
        "8.8.8.8",
        "1.1.1.1",
        "100.128.0.1",
        "172.32.0.1",
        "2606:4700::1111",
        "::ffff:8.8.8.8",
        "64:ff9b::808:808",
        "2002:808:808::1",
    ],
)
def test_public_unicast_addresses_are_allowed(address):
    assert addresses.refusal(address) is None


@pytest.mark.parametrize(
    "url, why",
    [
        ("http://127.0.0.1:8080/hook", "127.0.0.1 is a loopback address"),
        ("https://[fd00::1]/", "fd00::1 is a unique local address"),
        ("http://0x7f.1/", "0x7f.1 resolves to 127.0.0.1, a loopback address"),
        ("http://0/", "0 resolves to 0.0.0.0, an unspecified address"),
    ],
)
def test_notify_add_refuses_a_url_on_the_servers_own_network(url, why):
    with pytest.raises(MiddockError) as refused:
        addresses.check_public(webhooks.check_url(url))
    assert str(refused.value) == (
        f"webhook URL refused: {why}; a webhook may only reach public addresses unless it is added with --allow-private"
    )


def test_notify_add_refuses_a_name_with_any_refused_address_or_none(monkeypatch):
    """Every address a name resolves to is checked (no lookup is made here: `resolve` answers)."""
    answers = {
        "mixed.example.org": ["93.184.215.14", "10.0.0.7"],
        "public.example.org": ["93.184.215.14", "2606:4700::1111"],
    }

    def resolve(host: str, port: int) -> list:
        if host not in answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(socket.AF_UNSPEC, socket.SOCK_STREAM, 6, "", (ip, port)) for ip in answers[host]]

    monkeypatch.setattr(addresses, "resolve", resolve)
    with pytest.raises(
        MiddockError, match=r"^webhook URL refused: mixed\.example\.org resolves to 10\.0\.0\.7, a private"
    ):
        addresses.check_public("https://mixed.example.org/hook")
    addresses.check_public("https://public.example.org/hook")
    with pytest.raises(MiddockError) as unknown:
        addresses.check_public("https://typo.example.org/hook")
    assert str(unknown.value) == (
        "webhook host typo.example.org could not be resolved (Name or service not known): check the URL"
    )


@pytest.fixture
def no_connection(monkeypatch) -> list:
    """Every connection attempted (none is made: each fails at once)."""
    attempts = []

    def attempted(sock: socket.socket, address: object) -> None:
        attempts.append(address)
        raise ConnectionRefusedError(111, "Connection refused")

    monkeypatch.setattr(socket.socket, "connect", attempted)
    return attempts


def test_a_delivery_to_a_refused_address_records_why_and_never_connects(tmp_path, no_connection):
    shop = App("shop", tmp_path)
    webhooks.folder(shop).mkdir(parents=True)
    event = events.test_event("shop", None, None, 0.0)
    for url, why in [
        ("http://10.1.2.3/hook", "10.1.2.3 is a private address"),
        ("https://169.254.169.254/", "169.254.169.254 is a link-local address"),
        ("http://[::ffff:127.0.0.1]:8000/", "::ffff:127.0.0.1 is a loopback (IPv4 127.0.0.1) address"),
        ("http://2130706433/", "2130706433 resolves to 127.0.0.1, a loopback address"),
    ]:
        outcome = delivery.deliver(shop, webhooks.Webhook(url, events.EVENTS, 0.0), event, "s" * 64, pauses=(0, 0, 0))
        assert (outcome.status, outcome.attempts) == (None, 1)  # a refusal is not tried again
        assert outcome.error == (
            f"not sent: {why}; a webhook may only reach public addresses unless it is added with --allow-private"
        )
        assert webhooks.last_outcome(shop, url) == outcome
    assert no_connection == []


def test_a_name_that_resolves_elsewhere_by_delivery_time_is_checked_again(monkeypatch, no_connection):
    """DNS rebinding: the name is resolved as the delivery connects, and each address is checked
    right before it would be connected to; with --allow-private, the same addresses are tried."""
    rebound = [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, 443)) for ip in ("10.0.0.7", "169.254.169.254")]
    monkeypatch.setattr(addresses, "resolve", lambda host, port: rebound)
    with pytest.raises(addresses.Refused, match=r"^not sent: hooks\.example\.org resolves to 10\.0\.0\.7, a private"):
        addresses.connect("hooks.example.org", 443, 1.0, allow_private=False)
    assert no_connection == []
    with pytest.raises(ConnectionRefusedError):
        addresses.connect("hooks.example.org", 443, 1.0, allow_private=True)
    assert no_connection == [("10.0.0.7", 443), ("169.254.169.254", 443)]


def test_event_names():
    assert webhooks.parse_events("deploy,failed,rollback,cron-failed") == events.EVENTS
    assert webhooks.parse_events(" failed , deploy,failed") == ("deploy", "failed")
    with pytest.raises(
        MiddockError, match="unknown event 'deployed': events are deploy, failed, rollback, cron-failed"
    ):
        webhooks.parse_events("deploy,deployed")
    with pytest.raises(MiddockError, match="no event named"):
        webhooks.parse_events(",")


def test_the_records_keep_the_secret_once_and_private(tmp_path):
    app = App("shop", tmp_path)
    app.state.mkdir(parents=True)
    new, secret = webhooks.add(app, "https://a.example.org/", events.EVENTS)
    assert new and secret and len(secret) == 64
    assert webhooks.add(app, "https://b.example.org/", ("failed",)) == (True, None)
    assert webhooks.add(app, "https://a.example.org/", ("deploy",)) == (False, None)
    assert [(h.url, h.events) for h in webhooks.load(app)] == [
        ("https://a.example.org/", ("deploy",)),
        ("https://b.example.org/", ("failed",)),
    ]
    assert webhooks.secret(app) == secret
    for name in ("secret", "webhooks.json"):
        assert stat.S_IMODE((webhooks.folder(app) / name).stat().st_mode) == 0o600
    assert secret not in (webhooks.folder(app) / "webhooks.json").read_text()

    outcome = webhooks.Outcome("https://a.example.org/", 1.0, "deploy", 503, None, 3)
    webhooks.record(app, outcome)
    assert webhooks.last_outcome(app, outcome.url) == outcome and not outcome.ok
    assert webhooks.last_outcome(app, "https://b.example.org/") is None

    assert webhooks.remove(app, "https://a.example.org/") is False
    assert webhooks.last_outcome(app, outcome.url) is None
    with pytest.raises(MiddockError, match="shop has no webhook https://a.example.org/"):
        webhooks.remove(app, "https://a.example.org/")
    assert webhooks.remove(app, "https://b.example.org/") is True
    assert webhooks.secret(app) is None
    assert webhooks.add(app, "https://c.example.org/", ("deploy",))[1] not in (None, secret)
