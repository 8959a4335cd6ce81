"""Deploy notifications (notify/): notify, notify:add, notify:remove, notify:test, notify:rotate-secret."""

from __future__ import annotations

import argparse
import time
from dataclasses import asdict

from ..errors import MiddockError
from ..notify import addresses, delivery, events, webhooks
from ..notify.announce import live_url
from ..state import releases
from ..state.apps import App
from .commands import argument, command, emit_json, when


def no_webhooks(app: App) -> str:
    return f"{app.name} has no webhooks; add one with: notify:add {app.name} URL"


def show_secret(secret: str) -> None:
    """The signing secret, printed this once (it is kept only in the app's notify folder)."""
    print(f"       signing secret (shown only now): {secret}")
    print(f"       each POST carries {events.SIGNATURE_HEADER}: sha256=HMAC-SHA256(secret, body)")


@command("notify", "the app's webhooks and the result of each one's last delivery", json=True)
def cmd_notify(args: argparse.Namespace) -> int:
    app = App.named(args.app).require()
    listed = [(hook, webhooks.last_outcome(app, hook.url)) for hook in webhooks.load(app)]
    if args.json:
        return emit_json(
            [
                {
                    "url": hook.url,
                    "events": list(hook.events),
                    "allow_private": hook.allow_private,
                    "last": asdict(last) if last else None,
                }
                for hook, last in listed
            ]
        )
    if not listed:
        print(no_webhooks(app))
    for hook, last in listed:
        print(f"{hook.url}  {','.join(hook.events)}{'  (private addresses allowed)' * hook.allow_private}")
        if last is None:
            print("       last: none yet")
        else:
            tries = f"{last.attempts} attempt{'s' * (last.attempts > 1)}"
            print(f"       last: {when(last.time)} {last.event}: {last.answer} ({tries})")
    return 0


@command("notify:add", "POST a signed JSON event to URL on deploy, failed, rollback, cron-failed (default: all)")
@argument("url")
@argument("--events", default=",".join(events.EVENTS), metavar="E,…", help="the events to send (default: all)")
@argument(
    "--allow-private",
    action="store_true",
    help="let it reach loopback, link-local and private addresses (the server's own network)",
)
def cmd_notify_add(args: argparse.Namespace) -> int:
    app = App.named(args.app).require()
    url = webhooks.check_url(args.url)
    chosen = webhooks.parse_events(args.events)
    if not args.allow_private:
        addresses.check_public(url)
    new, secret = webhooks.add(app, url, chosen, args.allow_private)
    print(f"-----> {app.name}: {url} {'gets' if new else 'now gets'} {', '.join(chosen)}")
    if args.allow_private:
        print("       it may reach loopback, link-local and private addresses (--allow-private)")
    if secret:
        show_secret(secret)
    return 0


@command("notify:remove", "stop sending events to URL")
@argument("url")
def cmd_notify_remove(args: argparse.Namespace) -> int:
    app = App.named(args.app).require()
    last = webhooks.remove(app, args.url)
    print(f"-----> {app.name}: no more events to {args.url}")
    if last:
        print("       that was the last webhook: its signing secret is gone too (the next notify:add makes one)")
    return 0


@command("notify:test", "send a test event to every webhook now and show each one's answer")
def cmd_notify_test(args: argparse.Namespace) -> int:
    app = App.named(args.app).require()
    hooks = webhooks.load(app)
    if not hooks:
        raise MiddockError(no_webhooks(app))
    live = releases.live(app)
    event = events.test_event(app.name, live, live_url(app, live) if live else None, time.time())
    print(f"-----> Sending a test event to {len(hooks)} webhook{'s' * (len(hooks) > 1)} of {app.name}")
    outcomes = delivery.send(app, hooks, event, pauses=(0.0,))
    for outcome in outcomes:
        print(f"       {outcome.url}: {outcome.answer}")
    failed = [outcome for outcome in outcomes if not outcome.ok]
    if failed:
        raise MiddockError(f"{len(failed)} of {len(outcomes)} webhooks did not accept the test event")
    return 0


@command("notify:rotate-secret", "a new signing secret for the app's webhooks, printed once; the URLs stay")
def cmd_notify_rotate_secret(args: argparse.Namespace) -> int:
    app = App.named(args.app).require()
    secret = webhooks.rotate_secret(app)
    print(f"-----> {app.name}: a new signing secret for its webhooks (their URLs and events are unchanged)")
    show_secret(secret)
    return 0
