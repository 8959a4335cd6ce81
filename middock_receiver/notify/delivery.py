"""Posting events: each URL in a thread of its own, up to 3 attempts with backoff, each at most
5 s, and each URL's outcome recorded. A connection goes only to an address the webhook may reach
(addresses.py), straight there (no proxy), and a redirect is its answer, not followed.

A deploy never waits for this: `send_detached` starts a process of its own (its own session,
no file of the caller's, so neither the pusher's connection, nor the deploy lock, nor cron's
mail pipe is held by it) and returns at once. A slow, failing or unreachable URL only makes that
process last longer.
"""

from __future__ import annotations

import functools
import http.client
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
from . import addresses, events, webhooks
from .webhooks import Outcome, Webhook

ATTEMPT_TIMEOUT = 5.0
BACKOFF = (0.0, 1.0, 3.0)  # the pause before each attempt
RETRIED_STATUSES = frozenset({408, 429})  # besides 5xx: worth another try; other answers are final


@dataclass(frozen=True)
class Answer:
    status: int | None
    error: str | None
    refused: bool = False  # not sent: no address of the URL's host may be reached

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def final(self) -> bool:
        """Whether another attempt could not change it (a success, a refusal such as 404, or
        an address the webhook may not reach)."""
        if self.refused:
            return True
        return self.status is not None and self.status < 500 and self.status not in RETRIED_STATUSES


class KeepRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is the answer (a failure), not followed: urllib would turn the POST into a
    GET without the body elsewhere."""

    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


class Checked:
    """An http.client connection whose socket `addresses.connect` makes: to an address checked
    as it connects. The Host header and TLS (its SNI, the certificate's name) keep the URL's host."""

    def __init__(self, *args: object, allow_private: bool, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        # http.client makes its socket with this (socket.create_connection by default)
        self._create_connection = lambda address, timeout, source=None: addresses.connect(
            address[0], address[1], timeout, allow_private
        )


class CheckedHTTP(Checked, http.client.HTTPConnection):
    pass


class CheckedHTTPS(Checked, http.client.HTTPSConnection):
    pass


class CheckedHandler(urllib.request.AbstractHTTPHandler):
    """http:// and https:// through Checked connections."""

    def __init__(self, allow_private: bool) -> None:
        super().__init__()
        self.allow_private = allow_private

    def http_open(self, request: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(functools.partial(CheckedHTTP, allow_private=self.allow_private), request)

    def https_open(self, request: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(functools.partial(CheckedHTTPS, allow_private=self.allow_private), request)

    http_request = https_request = urllib.request.AbstractHTTPHandler.do_request_


def opener(allow_private: bool) -> urllib.request.OpenerDirector:
    """urllib with only what a webhook needs: no proxy (the address connected to is the one
    checked), no other scheme, a redirect kept as the answer."""
    director = urllib.request.OpenerDirector()
    for handler in (
        CheckedHandler(allow_private),
        KeepRedirects(),
        urllib.request.HTTPErrorProcessor(),
        urllib.request.HTTPDefaultErrorHandler(),
        urllib.request.UnknownHandler(),
    ):
        director.add_handler(handler)
    return director


def post(
    url: str, payload: bytes, headers: dict[str, str], timeout: float = ATTEMPT_TIMEOUT, allow_private: bool = False
) -> Answer:
    """One POST, over in `timeout` whatever happens: the socket's timeout bounds each read and
    connect, not the name lookup nor a receiver that trickles its answer, so it runs in a thread
    that is left behind when it takes longer."""
    answers: list[Answer] = []

    def attempt() -> None:
        answers.append(post_once(url, payload, headers, timeout, allow_private))

    thread = threading.Thread(target=attempt, daemon=True)
    thread.start()
    thread.join(timeout)
    return answers[0] if answers else Answer(None, f"no answer within {timeout:g}s")


def post_once(url: str, payload: bytes, headers: dict[str, str], timeout: float, allow_private: bool) -> Answer:
    request = urllib.request.Request(url, data=payload, headers=headers, method="POST")
    try:
        with opener(allow_private).open(request, timeout=timeout) as response:
            return Answer(response.status, None)
    except urllib.error.HTTPError as error:
        return Answer(error.code, None)
    except urllib.error.URLError as error:
        reason = error.reason  # an OSError (refused, no such host, a certificate) or a message
        if isinstance(reason, addresses.Refused):
            return Answer(None, str(reason), refused=True)
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


def deliver(app: App, hook: Webhook, event: dict, secret: str, pauses: tuple[float, ...] = BACKOFF) -> Outcome:
    """Post the event to one webhook, trying again after each pause while it fails; record the outcome."""
    payload = events.body(event)
    sent = headers(event, payload, secret)
    attempts = 0
    for pause in pauses:
        time.sleep(pause)
        attempts += 1
        answer = post(hook.url, payload, sent, allow_private=hook.allow_private)
        if answer.ok or answer.final:
            break
    outcome = Outcome(hook.url, time.time(), event["event"], answer.status, answer.error, attempts)
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

    def one(hook: Webhook) -> None:
        outcomes[hook.url] = deliver(app, hook, event, secret, pauses)

    threads = [threading.Thread(target=one, args=(hook,)) for hook in hooks]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [outcomes[hook.url] for hook in hooks]


def send_detached(app: App, event: dict) -> None:
    """Deliver the event to the app's webhooks that asked for it, from a process of its own;
    returns at once. The process is a new interpreter in its own session with no file of ours
    but the pipe that hands it the event: not the deploy lock, not the pusher's connection. It
    is isolated (`-I`, as the hooks and cron's lines start middock): no PYTHONPATH, user site
    or working folder decides what it imports."""
    if not any(event["event"] in hook.events for hook in webhooks.load(app)):
        return
    deliverer = subprocess.Popen(
        [sys.executable, "-I", "-m", __name__, str(app.home), app.name],
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
