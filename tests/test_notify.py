"""Deploy notifications end to end: a real webhook receiver on loopback (so its webhooks are
added with --allow-private), real pushes, real rollbacks and job runs; the refusal of loopback
and private addresses, when added and when delivered; and the delivery's retries and time bounds
against that receiver. Nothing here connects to an address other than loopback: a refused
address is refused before any connection."""

from __future__ import annotations

import getpass
import hashlib
import hmac
import json
import re
import socket
import subprocess
import sys
import time

import pytest
from support.apps import write_busybox_app, write_web_app
from support.ports import free_port
from support.webhooks import Post, Receiver

from middock_receiver.notify import delivery, events, webhooks
from middock_receiver.notify.webhooks import Webhook
from middock_receiver.state.apps import App

ALLOWED = "  (private addresses allowed)"


@pytest.fixture
def receivers():
    made: list[Receiver] = []

    def make(**options) -> Receiver:
        made.append(Receiver(**options))
        return made[-1]

    yield make
    for receiver in made:
        receiver.close()


def add(server, app: str, url: str, *options: str) -> str | None:
    """`notify:add … --allow-private` (the receivers are on loopback); the secret it printed, if it did."""
    return shown_secret(server.middock("notify:add", app, url, "--allow-private", *options).stdout)


def shown_secret(stdout: str) -> str | None:
    found = re.search(r"signing secret \(shown only now\): ([0-9a-f]{64})\n", stdout)
    return found[1] if found else None


def verified(post: Post, secret: str) -> dict:
    """The event of a POST whose signature checks out."""
    expected = hmac.new(secret.encode(), post.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(post.headers["X-Middock-Signature"], f"sha256={expected}")
    assert post.headers["Content-Type"] == "application/json"
    event = json.loads(post.body)
    assert post.headers["X-Middock-Event"] == event["event"]
    return event


def deploy_event(app: str) -> dict:
    """An event as a deploy hands it to the detached deliverer (notify:test's own is sent in process)."""
    return {**events.test_event(app, None, None, time.time()), "event": events.DEPLOY}


def last_outcome(server, app: str, url: str, timeout: float = 15) -> dict:
    """The URL's last delivery as `notify --json` shows it, once there is one."""
    deadline = time.monotonic() + timeout
    while True:
        row = next(r for r in json.loads(server.middock("notify", app, "--json").stdout) if r["url"] == url)
        if row["last"] is not None:
            return row["last"]
        assert time.monotonic() < deadline, f"no outcome recorded for {url}"
        time.sleep(0.2)


def test_deploy_and_failed_events_arrive_signed_and_the_secret_shows_once(server, work, app, receivers):
    everything, failures = receivers(), receivers()
    secret = add(server, app, everything.url)
    assert secret
    assert add(server, app, failures.url, "--events", "failed") is None

    write_busybox_app(work, free_port(), "v1")
    commit = work.commit("first version")
    assert work.push().returncode == 0
    deployed = verified(everything.wait(1)[0], secret)
    assert {k: deployed[k] for k in ("event", "app", "release", "kind", "commit", "subject", "result", "url")} == {
        "event": "deploy",
        "app": app,
        "release": 1,
        "kind": "deploy",
        "commit": commit,
        "subject": "first version",
        "result": "succeeded",
        "url": None,  # in place, not behind the edge
    }
    assert deployed["pusher"] == f"{getpass.getuser()} (local)"
    assert 0 < deployed["duration"] < 120
    assert deployed["text"] == (
        f"{app}: release 1 ({commit[:7]} first version) is live, deployed by {deployed['pusher']} "
        f"in {deployed['duration']:.1f}s"
    )

    work.write("docker/build-web.sh", "#!/bin/sh\necho about to fail\nexit 3\n", executable=True)
    broken = work.commit("broken build")
    assert "Deploy failed: build script" in work.push().stderr
    failed = verified(everything.wait(2)[1], secret)
    assert (failed["event"], failed["release"], failed["commit"], failed["result"]) == ("failed", 2, broken, "failed")
    assert failed["error"].startswith("build script docker/build-web.sh failed with exit code 3")
    by = f"by {failed['pusher']}"
    assert failed["text"] == f"{app}: release 2 ({broken[:7]} broken build) deploy {by} failed: {failed['error']}"
    assert [verified(post, secret)["event"] for post in failures.wait(1)] == ["failed"]

    last = last_outcome(server, app, failures.url)
    assert (last["event"], last["status"], last["error"], last["attempts"]) == ("failed", 200, None, 1)
    listing = server.middock("notify", app).stdout
    assert f"{failures.url}  failed{ALLOWED}\n       last: " in listing and "failed: HTTP 200 (1 attempt)" in listing
    assert f"{everything.url}  deploy,failed,rollback,cron-failed{ALLOWED}\n" in listing

    shown = [server.middock(*words).stdout for words in (("releases:output", app, "1"), ("releases:output", app))]
    shown += [listing, server.middock("notify", app, "--json").stdout, server.middock("status", app).stdout]
    assert not [text for text in shown if secret in text]
    state = server.home / ".middock" / app
    kept = [path for path in state.rglob("*") if path.is_file() and path.name != "secret"]
    assert not [path for path in kept if secret.encode() in path.read_bytes()]
    assert (state / "notify" / "secret").stat().st_mode & 0o777 == 0o600


def test_a_rollback_behind_the_edge_says_where_it_is_live(server, work, app, receivers):
    server.start_edge()
    hook = receivers()
    secret = add(server, app, hook.url, "--events", "rollback,deploy")
    write_web_app(work, "v1")
    first = work.commit("v1")
    assert work.push().returncode == 0
    write_web_app(work, "v2")
    work.commit("v2")
    assert work.push().returncode == 0
    server.middock("rollback", app)

    by_release = {event["release"]: event for event in (verified(post, secret) for post in hook.wait(3))}
    where = f"http://{socket.getfqdn()}:{server.app_port(app)}/"
    assert [(n, by_release[n]["event"], by_release[n]["url"]) for n in (1, 2, 3)] == [
        (1, "deploy", where),
        (2, "deploy", where),
        (3, "rollback", where),
    ]
    rollback = by_release[3]
    assert (rollback["kind"], rollback["commit"]) == ("rollback to 1", first)
    assert rollback["text"].startswith(
        f"{app}: release 3 ({first[:7]} v1), rollback to release 1, is live at {where}, by "
    )


def test_a_slow_receiver_delays_no_push_and_its_outcome_comes_later(server, work, app, receivers):
    slow = receivers(delays=(20,))  # the first attempt gets no answer within 5 s; the second does
    secret = add(server, app, slow.url)
    write_busybox_app(work, free_port(), "v1")
    work.commit("v1")
    started = time.monotonic()
    pushed = work.push()
    took = time.monotonic() - started
    assert pushed.returncode == 0, pushed.stderr
    assert took < 15, f"the push took {took:.1f}s"
    assert json.loads(server.middock("status", app, "--json").stdout)["state"] == "live"

    posts = slow.wait(2, timeout=20)
    assert posts[0].body == posts[1].body and verified(posts[1], secret)["event"] == "deploy"
    last = last_outcome(server, app, slow.url)
    assert (last["event"], last["status"], last["attempts"]) == ("deploy", 200, 2)


def test_notify_test_shows_each_answer(server, app, receivers):
    fine, broken = receivers(), receivers(statuses=(500,))
    gone = f"http://127.0.0.1:{free_port()}/gone"
    secret = add(server, app, fine.url)
    add(server, app, broken.url, "--events", "failed")
    add(server, app, gone)

    tested = server.middock("notify:test", app, check=False)
    assert tested.returncode == 1
    assert tested.stderr == " !     2 of 3 webhooks did not accept the test event\n"
    lines = tested.stdout.splitlines()
    assert lines[:3] == [
        f"-----> Sending a test event to 3 webhooks of {app}",
        f"       {fine.url}: HTTP 200",
        f"       {broken.url}: HTTP 500",
    ]
    assert lines[3].startswith(f"       {gone}: error: ") and "refused" in lines[3]
    event = verified(fine.wait(1)[0], secret)
    assert (event["event"], event["app"], event["release"]) == ("test", app, None)
    assert len(broken.wait(1)) == 1  # a test is one attempt

    server.middock("notify:remove", app, broken.url)
    server.middock("notify:remove", app, gone)
    assert server.middock("notify:test", app).stdout.endswith(f"{fine.url}: HTTP 200\n")
    assert last_outcome(server, app, fine.url)["event"] == "test"


def test_bad_input_is_one_line_and_changes_nothing(server, app):
    for words, message in [
        (("notify:add", app, "ftp://x"), "invalid webhook URL 'ftp://x': use an http:// or https:// URL with a host"),
        (("notify:add", app, "https://x.example.org/", "--events", "deploy,oops"), "unknown event 'oops'"),
        (("notify:remove", app, "https://x.example.org/"), f"{app} has no webhook https://x.example.org/"),
        (("notify:test", app), f"{app} has no webhooks; add one with: notify:add {app} URL"),
    ]:
        result = server.middock(*words, check=False)
        assert result.returncode == 1 and result.stdout == "", words
        assert result.stderr.startswith(f" !     {message}") and result.stderr.count("\n") == 1, result.stderr
    assert server.middock("notify", app).stdout == f"{app} has no webhooks; add one with: notify:add {app} URL\n"


def test_loopback_and_private_urls_are_refused_unless_allowed(server, app, receivers):
    """notify:add refuses a URL on the server's own network in one line, stores nothing, and
    takes it with --allow-private (then it is delivered)."""
    port = free_port()
    for url, why in [
        (f"http://127.0.0.1:{port}/", "127.0.0.1 is a loopback address"),
        ("http://10.1.2.3/", "10.1.2.3 is a private address"),
        ("http://[::1]/hook", "::1 is a loopback address"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is a link-local address"),
        ("http://localhost/", "localhost resolves to 127.0.0.1, a loopback address"),
        ("http://2130706433/", "2130706433 resolves to 127.0.0.1, a loopback address"),
        ("https://[::ffff:10.0.0.1]/", "::ffff:10.0.0.1 is a private (IPv4 10.0.0.1) address"),
    ]:
        refused = server.middock("notify:add", app, url, check=False)
        assert (refused.returncode, refused.stdout) == (1, ""), url
        assert refused.stderr == (
            f" !     webhook URL refused: {why}; a webhook may only reach public addresses unless it is added "
            "with --allow-private\n"
        )
    assert json.loads(server.middock("notify", app, "--json").stdout) == []
    assert not (server.home / ".middock" / app / "notify").exists()

    hook = receivers()
    added = server.middock("notify:add", app, hook.url, "--allow-private").stdout
    assert "it may reach loopback, link-local and private addresses (--allow-private)" in added
    secret = shown_secret(added)
    assert server.middock("notify:test", app).stdout.endswith(f"{hook.url}: HTTP 200\n")
    assert verified(hook.wait(1)[0], secret)["event"] == "test"
    assert json.loads(server.middock("notify", app, "--json").stdout)[0]["allow_private"] is True
    assert server.middock("notify", app).stdout.startswith(f"{hook.url}  deploy,failed,rollback,cron-failed{ALLOWED}\n")


def test_a_webhook_not_allowed_private_is_never_sent_to_loopback(server, app, receivers):
    """A webhook kept without --allow-private whose host is (or now resolves to) loopback gets
    nothing, from notify:test or from a deploy's detached deliverer; `notify` says why."""
    direct, named = receivers(), receivers()
    by_name = f"http://localhost:{named.server.server_address[1]}/named"
    target = App(app, server.home)
    for url in (direct.url, by_name):  # kept as if the name had resolved to a public address when added
        webhooks.add(target, url, events.EVENTS)

    tested = server.middock("notify:test", app, check=False)
    assert (tested.returncode, tested.stderr) == (1, " !     2 of 2 webhooks did not accept the test event\n")
    hint = "a webhook may only reach public addresses unless it is added with --allow-private"
    assert tested.stdout.splitlines()[1:] == [
        f"       {direct.url}: error: not sent: 127.0.0.1 is a loopback address; {hint}",
        f"       {by_name}: error: not sent: localhost resolves to 127.0.0.1, a loopback address; {hint}",
    ]
    listing = server.middock("notify", app).stdout
    assert f"test: error: not sent: localhost resolves to 127.0.0.1, a loopback address; {hint} (1 attempt)" in listing

    for url in (direct.url, by_name):
        webhooks.outcome_path(target, url).unlink()
    delivery.send_detached(target, deploy_event(app))
    for url in (direct.url, by_name):
        outcome = last_outcome(server, app, url)
        assert (outcome["status"], outcome["attempts"]) == (None, 1) and outcome["error"].startswith("not sent: ")
    time.sleep(0.5)
    assert direct.posts == [] and named.posts == []


def test_rotating_the_secret_keeps_the_urls(server, app, receivers):
    """notify:rotate-secret prints a new secret once; every webhook stays and is signed with it."""
    first, second = receivers(), receivers()
    old = add(server, app, first.url)
    add(server, app, second.url, "--events", "failed")
    before = json.loads(server.middock("notify", app, "--json").stdout)

    rotated = server.middock("notify:rotate-secret", app).stdout
    assert rotated.startswith(
        f"-----> {app}: a new signing secret for its webhooks (their URLs and events are unchanged)\n"
    )
    assert "each POST carries X-Middock-Signature: sha256=HMAC-SHA256(secret, body)" in rotated
    new = shown_secret(rotated)
    assert new and new != old
    assert json.loads(server.middock("notify", app, "--json").stdout) == before
    assert old not in server.middock("notify", app).stdout + rotated.replace(new, "")

    server.middock("notify:test", app)
    for post in (first.wait(1)[0], second.wait(1)[0]):
        assert verified(post, new)["event"] == "test"
        with pytest.raises(AssertionError):
            verified(post, old)

    server.middock("notify:remove", app, first.url)
    server.middock("notify:remove", app, second.url)
    refused = server.middock("notify:rotate-secret", app, check=False)
    assert (refused.returncode, refused.stdout) == (1, "")
    assert refused.stderr == (
        f" !     {app} has no webhooks, so no signing secret; add one with: notify:add {app} URL\n"
    )


def test_a_failed_scheduled_run_notifies(server, work, app, receivers):
    hook = receivers()
    secret = add(server, app, hook.url, "--events", "cron-failed")
    write_busybox_app(work, free_port(), "v1")
    work.write("middock.cron", "fail @daily worker sh -c 'echo failing; exit 3'\nfine @daily worker true\n")
    commit = work.commit("with jobs")
    assert work.push().returncode == 0

    server.middock("cron:run", app, "fine", "--scheduled")
    assert server.middock("cron:run", app, "fail", check=False).returncode == 3  # by hand: its caller sees it
    assert server.middock("cron:run", app, "fail", "--scheduled", check=False).returncode == 3
    event = verified(hook.wait(1)[0], secret)
    assert {k: event[k] for k in ("event", "release", "commit", "job", "run", "exit_code", "result")} == {
        "event": "cron-failed",
        "release": 1,
        "commit": commit,
        "job": "fail",
        "run": 2,
        "exit_code": 3,
        "result": "failed",
    }
    assert event["text"].startswith(f"{app}: job fail (run 2) failed with exit code 3 after ")
    time.sleep(1)
    assert len(hook.posts) == 1


# The delivery alone: its retries, what it does not retry, and its time bound.


@pytest.fixture
def shop(tmp_path) -> App:
    """An app with a notify folder (its first notify:add makes it; outcomes are kept there)."""
    app = App("shop", tmp_path)
    webhooks.folder(app).mkdir(parents=True)
    return app


def loopback(url: str) -> Webhook:
    """A webhook of every event to a receiver on loopback, as notify:add --allow-private keeps it."""
    return Webhook(url, events.EVENTS, 0.0, allow_private=True)


def test_the_detached_deliverer_is_isolated_from_pythonpath(shop, receivers, tmp_path, monkeypatch):
    """A PYTHONPATH in the environment of a deploy or a cron run decides nothing the deliverer
    runs: it starts as `python -I`, and still finds middock and delivers."""
    trap, marker = tmp_path / "trap", tmp_path / "imported"
    trap.mkdir()
    (trap / "sitecustomize.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    monkeypatch.setenv("PYTHONPATH", str(trap))
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    assert marker.exists(), "the trap works: without -I, Python imports it"
    marker.unlink()

    hook = receivers()
    webhooks.save(shop, [loopback(hook.url)])
    webhooks.new_secret(shop)
    delivery.send_detached(shop, deploy_event("shop"))
    assert verified(hook.wait(1)[0], webhooks.secret(shop))["event"] == "deploy"
    assert not marker.exists()


def test_failures_are_tried_again_and_refusals_are_not(shop, receivers):
    flaky, missing, moved = receivers(statuses=(500, 429, 200)), receivers(statuses=(404,)), receivers(statuses=(302,))
    event = events.test_event("shop", None, None, 0.0)
    outcome = delivery.deliver(shop, loopback(flaky.url), event, "s" * 64, pauses=(0, 0.1, 0.1))
    assert (outcome.status, outcome.attempts, outcome.ok) == (200, 3, True)
    assert len(flaky.posts) == 3 and webhooks.last_outcome(shop, flaky.url) == outcome
    assert delivery.deliver(shop, loopback(missing.url), event, "s" * 64, pauses=(0, 0.1, 0.1)).attempts == 1
    redirected = delivery.deliver(shop, loopback(moved.url), event, "s" * 64, pauses=(0, 0.1, 0.1))
    assert (redirected.status, redirected.attempts, redirected.ok, len(moved.posts)) == (302, 1, False, 1)


def test_an_attempt_is_bounded_in_time(receivers):
    slow = receivers(delays=(10,))
    started = time.monotonic()
    answer = delivery.post(slow.url, b"{}", {"Content-Type": "application/json"}, timeout=1, allow_private=True)
    assert answer == delivery.Answer(None, "no answer within 1s")
    assert time.monotonic() - started < 2
