"""What a webhook receives: the event as JSON, its signature, and the `text` line that chat
webhooks (Slack, Mattermost, Discord's Slack-compatible endpoint) show as is.

Pure functions of the records: no files, no network, so every field is tested on its own.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time

from ..jobs.runs import TIMED_OUT, Run
from ..state.releases import SUCCEEDED, Release

DEPLOY, FAILED, ROLLBACK, CRON_FAILED = "deploy", "failed", "rollback", "cron-failed"
EVENTS = (DEPLOY, FAILED, ROLLBACK, CRON_FAILED)  # what a webhook may ask for (notify:add --events)
TEST = "test"  # notify:test's event: every webhook gets it
SIGNATURE_HEADER = "X-Middock-Signature"
SUBJECT_IN_TEXT = 72  # a longer commit subject is cut in the text line (the `subject` field has it all)


def release_event(app: str, release: Release, url: str | None) -> dict:
    """The event of a finished deploy, rollback, restart or rescale (`url`: where it is live)."""
    name = release_event_name(release)
    event = {
        "event": name,
        **release_fields(app, release),
        "url": url if name != FAILED else None,
        "duration": seconds(release.duration),
        "result": release.result,
        "error": (release.message or None) if name == FAILED else None,
        "time": timestamp(release.finished),
    }
    event["text"] = failed_text(app, release) if name == FAILED else live_text(app, release, event["url"])
    return event


def release_event_name(release: Release) -> str:
    """`deploy` for a deploy, restart or rescale that went live, `rollback` for a rollback that
    did, `failed` for either that did not."""
    if release.result != SUCCEEDED:
        return FAILED
    return ROLLBACK if release.kind.startswith("rollback") else DEPLOY


def job_event(app: str, release: Release, run: Run, error: str | None) -> dict:
    """The event of a scheduled job's run that failed or timed out, with the live release it
    ran from; `error` is middock's own line when the run could not start."""
    event = {
        "event": CRON_FAILED,
        **release_fields(app, release),
        "url": None,
        "duration": seconds(run.duration),
        "result": run.result,
        "error": error,
        "time": timestamp(run.finished),
        "job": run.job,
        "run": run.number,
        "exit_code": run.exit_code,
    }
    event["text"] = job_text(app, run, error)
    return event


def test_event(app: str, live: Release | None, url: str | None, now: float) -> dict:
    """notify:test's event: the live release's fields (null before the first deploy)."""
    fields = release_fields(app, live) if live else dict.fromkeys(("release", "commit", "subject", "pusher"))
    where = f" at {url}" if url else ""
    state = f"release {live.number} is live{where}" if live else "nothing is deployed yet"
    return {
        "event": TEST,
        "app": app,
        **fields,
        "url": url,
        "duration": None,
        "result": TEST,
        "error": None,
        "time": timestamp(now),
        "text": f"{app}: test notification from middock ({state})",
    }


def release_fields(app: str, release: Release) -> dict:
    return {
        "app": app,
        "release": release.number,
        "kind": release.kind,
        "commit": release.commit,
        "subject": release.subject,
        "pusher": release.pusher,
    }


def body(event: dict) -> bytes:
    """The exact bytes posted and signed."""
    return json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode()


def signature(secret: str, payload: bytes) -> str:
    """The `X-Middock-Signature` value: HMAC-SHA256 of the body, keyed with the secret's text."""
    return "sha256=" + hmac.new(secret.encode(), payload, hashlib.sha256).hexdigest()


def live_text(app: str, release: Release, url: str | None) -> str:
    what = f"{app}: release {release.number} ({described(release)})"
    if release.kind != "deploy":
        what += f", {action(release)},"
    at = f" at {url}" if url else ""
    by = f"{'deployed ' if release.kind == 'deploy' else ''}by {chat(release.pusher)}"
    took = f" in {release.duration:.1f}s" if release.duration is not None else ""
    return f"{what} is live{at}, {by}{took}"


def failed_text(app: str, release: Release) -> str:
    by = f"by {chat(release.pusher)}"
    return (
        f"{app}: release {release.number} ({described(release)}) {action(release)} {by} failed: {chat(release.message)}"
    )


def job_text(app: str, run: Run, error: str | None) -> str:
    took = f" after {run.duration:.1f}s" if run.duration is not None else ""
    job = f"{app}: job {run.job} (run {run.number})"
    if error:
        return f"{job} failed: {chat(error)}"
    if run.result == TIMED_OUT:
        return f"{job} timed out{took} (MIDDOCK_CRON_TIMEOUT)"
    return f"{job} failed with exit code {run.exit_code}{took}"


def described(release: Release) -> str:
    """`4f2a9c1 Fix login`: the short commit and its subject, cut to fit a chat line."""
    subject = release.subject
    if len(subject) > SUBJECT_IN_TEXT:
        subject = subject[: SUBJECT_IN_TEXT - 1] + "…"
    return f"{release.commit[:7]} {chat(subject)}".strip()


def action(release: Release) -> str:
    """What the release did, as the text line says it: deploy, rollback to release 3, restart of release 5."""
    if release.kind.startswith("rollback to "):
        return f"rollback to release {release.kind.removeprefix('rollback to ')}"
    return release.kind


def chat(text: str) -> str:
    """Text from a commit, a pusher or an error, made inert for chat webhooks: Slack reads `<…>`
    as links and mentions (`<!channel>`), so `&`, `<` and `>` are escaped as it asks."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def seconds(duration: float | None) -> float | None:
    return None if duration is None else round(duration, 1)


def timestamp(moment: float | None) -> str | None:
    """ISO 8601 in UTC, to the second: 2026-12-02T11:17:35Z."""
    return None if moment is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(moment))
