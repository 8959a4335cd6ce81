"""An app's webhooks, in `.middock/APP/notify/`: `webhooks.json` (each URL and the events it
gets), `secret` (the signing key), and `last/HASH.json`, each URL's last delivery.

Every file is the deploy user's alone (0600): a chat webhook's URL is itself a credential. The
secret is made by the first `notify:add` and shown then only; removing the last URL removes it
too, so adding one again makes (and shows) a new one. Each URL's outcome has a file of its own,
so deliveries running at once (a deploy's, a job's) never write over each other's record.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from .. import flock
from ..errors import MiddockError
from ..state import records
from ..state.apps import App, write_atomic
from .events import EVENTS, TEST

PRIVATE = 0o600
URL_MAX = 2048
SECRET = re.compile(r"[0-9a-f]{64}\Z")  # secrets.token_hex(32)


@dataclass(frozen=True)
class Webhook:
    url: str
    events: tuple[str, ...]
    added: float
    allow_private: bool = False  # notify:add --allow-private: it may reach loopback and private addresses


@dataclass(frozen=True)
class Outcome:
    """A URL's last delivery: when, of which event, the HTTP status or the error, how many tries."""

    url: str
    time: float
    event: str
    status: int | None
    error: str | None
    attempts: int

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def answer(self) -> str:
        return f"HTTP {self.status}" if self.status is not None else f"error: {self.error}"


def check_url(url: str) -> str:
    """An http or https URL with a host, or a MiddockError saying what is wrong with it."""
    try:
        parts = urllib.parse.urlsplit(url)
        port_ok = parts.port is None or parts.port > 0
    except ValueError:
        parts, port_ok = None, False
    printable = url.isprintable() and " " not in url
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname or not port_ok or not printable:
        raise MiddockError(f"invalid webhook URL {url!r}: use an http:// or https:// URL with a host")
    if len(url) > URL_MAX:
        raise MiddockError(f"webhook URL too long: {len(url)} characters (at most {URL_MAX})")
    return url


def parse_events(text: str) -> tuple[str, ...]:
    """`deploy,failed` -> the named events, in their usual order; an unknown or no name is refused."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in EVENTS]
    if unknown or not names:
        found = f"unknown event {unknown[0]!r}" if unknown else "no event named"
        raise MiddockError(f"{found}: events are {', '.join(EVENTS)} (comma-separated)")
    return tuple(name for name in EVENTS if name in names)


def folder(app: App) -> Path:
    return app.state / "notify"


def outcome_path(app: App, url: str) -> Path:
    return folder(app) / "last" / f"{hashlib.sha256(url.encode()).hexdigest()[:24]}.json"


def load(app: App) -> list[Webhook]:
    path = folder(app) / "webhooks.json"
    stored = records.read_json(path)
    if stored is None:
        return []
    with records.checked(path):
        return [stored_webhook(w) for w in stored["webhooks"]]


def stored_webhook(stored: dict) -> Webhook:
    """One webhook of `webhooks.json` (one from before --allow-private existed has it off)."""
    allow_private = stored.get("allow_private", False)
    if not isinstance(allow_private, bool):
        raise TypeError(f"allow_private is not true or false: {allow_private!r:.60}")
    url, names, added = stored["url"], stored["events"], stored["added"]
    if not (isinstance(url, str) and isinstance(names, list) and all(isinstance(name, str) for name in names)):
        raise TypeError("url is not text, or events not a list of event names")
    if not records.conforms(added, float):
        raise TypeError(f"added is not a time: {added!r:.60}")
    return Webhook(check_url(url), parse_events(",".join(names)), added, allow_private)


def save(app: App, hooks: list[Webhook]) -> None:
    stored = {"webhooks": [asdict(hook) for hook in hooks]}
    write_atomic(folder(app) / "webhooks.json", json.dumps(stored, indent=2) + "\n", PRIVATE)


def secret(app: App) -> str | None:
    path = folder(app) / "secret"
    found = records.read_line(path)
    if found is not None and not SECRET.match(found):
        raise records.invalid(path, "not a signing secret middock made")
    return found


@contextmanager
def changing(app: App) -> Iterator[list[Webhook]]:
    """The webhooks to change in place, saved at the end; one change at a time."""
    folder(app).mkdir(mode=0o700, exist_ok=True)
    with flock.held(folder(app) / "lock"):
        hooks = load(app)
        yield hooks
        save(app, hooks)


def add(app: App, url: str, events: tuple[str, ...], allow_private: bool = False) -> tuple[bool, str | None]:
    """Send `events` to `url` (a URL already there gets these events and `allow_private`
    instead); returns whether it is new, and the secret when this made it (to show once)."""
    with changing(app) as hooks:
        known = [i for i, hook in enumerate(hooks) if hook.url == url]
        if known:
            hooks[known[0]] = Webhook(url, events, hooks[known[0]].added, allow_private)
        else:
            hooks.append(Webhook(url, events, time.time(), allow_private))
        made = None if secret(app) is not None else new_secret(app)
    return not known, made


def rotate_secret(app: App) -> str:
    """A new signing secret in place of the old one, the webhooks as they are; returns it (to
    show once). Deliveries already under way sign with the one they started with."""
    none = MiddockError(f"{app.name} has no webhooks, so no signing secret; add one with: notify:add {app.name} URL")
    if secret(app) is None:  # checked first so that nothing is made (the lock, the folder) for nothing
        raise none
    with changing(app) as hooks:
        if not hooks:  # the last one was removed meanwhile, and its secret with it
            raise none
        return new_secret(app)


def new_secret(app: App) -> str:
    made = secrets.token_hex(32)
    write_atomic(folder(app) / "secret", made + "\n", PRIVATE)
    return made


def remove(app: App, url: str) -> bool:
    """Stop sending to `url`; returns whether it was the last one (then the secret goes too)."""
    missing = MiddockError(f"{app.name} has no webhook {url}; `notify {app.name}` lists them")
    if url not in {hook.url for hook in load(app)}:  # checked first: nothing is made (the lock, the folder) for nothing
        raise missing
    with changing(app) as hooks:
        if url not in {hook.url for hook in hooks}:  # removed meanwhile
            raise missing
        hooks[:] = [hook for hook in hooks if hook.url != url]
        outcome_path(app, url).unlink(missing_ok=True)
        if not hooks:
            (folder(app) / "secret").unlink(missing_ok=True)
    return not hooks


def record(app: App, outcome: Outcome) -> None:
    path = outcome_path(app, outcome.url)
    path.parent.mkdir(mode=0o700, exist_ok=True)
    write_atomic(path, json.dumps(asdict(outcome), indent=2) + "\n", PRIVATE)


def last_outcome(app: App, url: str) -> Outcome | None:
    path = outcome_path(app, url)
    return records.load(path, Outcome, lambda outcome: check_outcome(outcome, url))


def check_outcome(outcome: Outcome, url: str) -> None:
    """As `record` writes it: a delivery of an event to this URL."""
    if outcome.url != url or outcome.event not in (*EVENTS, TEST):
        raise ValueError(f"it is not of a delivery to this URL: {outcome.url!r:.60}, {outcome.event!r:.60}")
