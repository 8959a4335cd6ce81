"""Preview apps of branches (previews/): previews, previews:destroy, previews:expire."""

from __future__ import annotations

import argparse
import sys
import time

from ..edge.control import Edge
from ..errors import MiddockError
from ..output import Output
from ..previews import destroy
from ..state import previews, releases
from ..state.app_state import app_state
from ..state.apps import App
from .commands import argument, command, emit_json, when


def age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def preview_row(app: App, preview: previews.Preview, edge: Edge) -> dict:
    live = releases.live(app)
    return {
        "name": app.name,
        "branch": preview.branch,
        "url": (edge.urls(app) or [None])[0] if live else None,
        "release": live.number if live else None,
        "commit": live.commit if live else None,
        "state": app_state(app),
        "created": preview.created,
        "pushed": preview.pushed,
        "age": time.time() - preview.created,
    }


def parent_of(name: str) -> App:
    app = App.named(name).require()
    if app.parent:
        raise MiddockError(f"{app.name} is a preview of {app.parent}; its previews are listed under {app.parent}")
    return app


@command("previews", "list the app's preview apps of branches", json=True)
def cmd_previews(args: argparse.Namespace) -> int:
    parent = parent_of(args.app)
    edge = Edge(parent.home)
    rows = [
        preview_row(app, preview, edge)
        for app, preview in sorted(previews.of_parent(parent).items(), key=lambda item: item[0].name)
    ]
    if args.json:
        return emit_json(rows)
    if not rows:
        print(f"{parent.name} has no previews (apps:set {parent.name} previews on, then push a branch)")
    for row in rows:
        release = f"release {row['release']} ({row['commit'][:7]})" if row["release"] else "no release"
        print(
            f"{row['name']:<32} {row['branch']:<24} {release:<22} {row['state']:<12} "
            f"pushed {when(row['pushed'])}  age {age(row['age'])}  {row['url'] or '-'}"
        )
    return 0


@command("previews:destroy", "destroy the preview of a branch: teardown, containers, images, routes")
@argument("branch")
def cmd_previews_destroy(args: argparse.Namespace) -> int:
    parent = parent_of(args.app)
    app = previews.find(parent, args.branch)
    if app is None:
        raise MiddockError(f"{parent.name} has no preview of branch {args.branch!r} (see: previews {parent.name})")
    destroy.destroy(app, Output(sys.stdout.buffer))
    return 0


@command("previews:expire", "destroy the previews that got no push for preview-ttl days (cron runs it daily)")
def cmd_previews_expire(args: argparse.Namespace) -> int:
    parent = parent_of(args.app)
    if not destroy.expire(parent, Output(sys.stdout.buffer)):
        print(f"-----> {parent.name}: no preview past its preview-ttl")
    return 0
