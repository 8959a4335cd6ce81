"""Posting events: each URL in a thread of its own, up to 3 attempts with backoff, each at most
5 s, and each URL's outcome recorded.

A deploy never waits for this: `send_detached` starts a process of its own (its own session,
no file of the caller's, so neither the pusher's connection, nor the deploy lock, nor cron's
mail pipe is held by it) and returns at once. A slow, failing or unreachable URL only makes that
process last longer.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from .. import __version__
from ..errors import MiddockError
from ..state.apps import App
from . import events, webhooks
from .webhooks import Outcome, Webhook

ATTEMPT_TIMEOUT = 5.0
BACKOFF = (0.0, 1.0, 3.0)  # the pause before each attempt
RETRIED_STATUSES = frozenset({408, 429})  # besides 5xx: worth another try; other answers are final


@dataclass(frozen=True)
class Answer:
    status: int | None
    error: str | None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def final(self) -> bool:
        """Whether another attempt could not change it (a success, or a refusal such as 404)."""
        return self.status is not None and self.status < 500 and self.status not in RETRIED_STATUSES


class KeepRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is the answer (a failure), not followed: urllib would turn the POST into a
    GET without the body elsewhere."""

    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


OPENER = urllib.request.build_opener(KeepRedirects)


def post(url: str, payload: bytes, headers: dict[str, str], timeout: float = ATTEMPT_TIMEOUT) -> Answer:
    """One POST, over in `timeout` whatever happens: the socket's timeout bounds each read and
    connect, not the name lookup nor a receiver that trickles its answer, so it runs in a thread
    that is left behind when it takes longer."""
    answers: list[Answer] = []
    attempt = threading.Thread(target=lambda: answers.append(post_once(url, payload, headers, timeout)), daemon=True)
    attempt.start()
    attempt.join(timeout)
    return answers[0] if answers else Answer(None, f"no answer within {timeout:g}s")


def post_once(url: str, payload: bytes, headers: dict[str, str], timeout: float) -> Answer:
    request = urllib.request.Request(url, data=payload, headers=headers, method="POST")
    try:
        with OPENER.open(request, timeout=timeout) as response:
            return Answer(response.status, None)
    except urllib.error.HTTPError as error:
        return Answer(error.code, None)
    except urllib.error.URLError as error:
        reason = error.reason  # an OSError (refused, no such host, a certificate) or a message
        if isinstance(reason, TimeoutError):
            return Answer(None, f"no answer within {timeout:g}s")
        return Answer(None, getattr(reason, "strerror", None) or str(reason))
    except TimeoutError:
        return Answer(None, f"no answer within {timeout:g}s")
    except (OSError, ValueError) as error:  # a reset connection, a malformed answer
        return Answer(None, str(error) or type(error).__name__)


def headers(event: dict, payload: bytes, secret: str) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "User-Agent": f"middock/{__version__}",
        "X-Middock-Event": event["event"],
        events.SIGNATURE_HEADER: events.signature(secret, payload),
    }


def deliver(app: App, url: str, event: dict, secret: str, pauses: tuple[float, ...] = BACKOFF) -> Outcome:
    """Post the event to one URL, trying again after each pause while it fails; record the outcome."""
    payload = events.body(event)
    sent = headers(event, payload, secret)
    attempts = 0
    for pause in pauses:
        time.sleep(pause)
        attempts += 1
        answer = post(url, payload, sent)
        if answer.ok or answer.final:
            break
    outcome = Outcome(url, time.time(), event["event"], answer.status, answer.error, attempts)
    try:
        webhooks.record(app, outcome)
    except OSError:  # the app was destroyed meanwhile, or its disk is full: the outcome is not kept
        pass
    return outcome


def send(app: App, hooks: list[Webhook], event: dict, pauses: tuple[float, ...] = BACKOFF) -> list[Outcome]:
    """Deliver to every URL at once (a slow one holds up no other); their outcomes in `hooks`' order."""
    secret = webhooks.secret(app)
    if secret is None:
        raise MiddockError(f"{app.name}'s webhooks have no signing secret: notify:remove and notify:add them again")
    outcomes: dict[str, Outcome] = {}

    def one(url: str) -> None:
        outcomes[url] = deliver(app, url, event, secret, pauses)

    threads = [threading.Thread(target=one, args=(hook.url,)) for hook in hooks]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [outcomes[hook.url] for hook in hooks]


def send_detached(app: App, event: dict) -> None:
    """Deliver the event to the app's webhooks that asked for it, from a process of its own;
    returns at once. The process is a new interpreter in its own session with no file of ours
    but the pipe that hands it the event: not the deploy lock, not the pusher's connection."""
    if not any(event["event"] in hook.events for hook in webhooks.load(app)):
        return
    deliverer = subprocess.Popen(
        [sys.executable, "-m", __name__, str(app.home), app.name],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd="/",
        start_new_session=True,
    )
    with deliverer.stdin:
        deliverer.stdin.write(json.dumps(event).encode())


def main(argv: list[str]) -> int:
    """The detached deliverer: `python -m middock_receiver.notify.delivery HOME APP`, the event on stdin."""
    app = App.named(argv[1], Path(argv[0]))
    event = json.loads(sys.stdin.buffer.read())
    send(app, [hook for hook in webhooks.load(app) if event["event"] in hook.events], event)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
