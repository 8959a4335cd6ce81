"""Deploy notifications without Docker or a network: the events' fields, body, signature and
text line, the URL and event rules, and the records in the app's state folder."""

from __future__ import annotations

import hashlib
import hmac
import json
import stat

import pytest

from middock_receiver.errors import MiddockError
from middock_receiver.jobs.runs import FAILED as RUN_FAILED
from middock_receiver.jobs.runs import TIMED_OUT, Run
from middock_receiver.notify import events, webhooks
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
    assert failed["text"] == f"shop: release 12 (4f2a9c1 Fix login) deploy failed: {message}"

    failed_rollback = events.release_event("shop", release(kind="rollback to 10", result=FAILED, message="x"), None)
    assert failed_rollback["event"] == "failed"
    assert failed_rollback["text"] == "shop: release 12 (4f2a9c1 Fix login) rollback to release 10 failed: x"


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
