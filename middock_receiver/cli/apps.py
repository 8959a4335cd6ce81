"""Apps: list, create, destroy, and their settings."""

from __future__ import annotations

import argparse
import sys

from ..edge import routes
from ..edge.control import Edge
from ..errors import MiddockError
from ..jobs import crontab
from ..output import Output
from ..previews import destroy
from ..state import apps, previews, releases
from ..state.app_state import app_state
from ..state.apps import App
from .commands import argument, command, emit_json


@command("apps", "list apps with their live release, state and routes", app=False, json=True)
def cmd_apps(args: argparse.Namespace) -> int:
    rows = []
    grant = args.grant  # over SSH, a key of some apps sees only those (and their previews)
    for app in apps.all_apps():
        if grant and not (grant.holds(app.name) or (app.parent and grant.holds(app.parent))):
            continue
        live = releases.live(app)
        rows.append(
            {
                "app": app.name,
                "release": live.number if live else None,
                "commit": live.commit if live else None,
                "state": app_state(app),
                "gate": apps.read_settings(app)["gate"],
                "routes": Edge(app.home).urls(app) if live and live.slot else [],
            }
        )
    if args.json:
        return emit_json(rows)
    if not rows:
        print("no apps yet; create one with: apps:create APP")
    for row in rows:
        release = f"release {row['release']} ({row['commit'][:7]})" if row["release"] else "no release"
        print(f"{row['app']:<24} {release:<24} {row['state']:<12} gate {row['gate']:<4} {' '.join(row['routes'])}")
    return 0


@command("apps:create", "create an app")
@argument("--gate", action="store_true", help="reject pushes whose deploy fails")
def cmd_apps_create(args: argparse.Namespace) -> int:
    app = App.named(args.app)
    apps.create(app, sys.executable)
    if args.gate:
        set_setting(app, "gate", "on")
    print(f"-----> Created {app.name}: push to {app.repo}")
    return 0


@command("apps:destroy", "stop the stack and remove everything of the app")
@argument("--force", action="store_true")
def cmd_apps_destroy(args: argparse.Namespace) -> int:
    from ..pipeline.removal import remove_app

    app = App.named(args.app).require()
    found = sorted(previews.of_parent(app), key=lambda preview: preview.name)
    own = [preview.name for preview in found]
    if not args.force:
        also = f" and its previews ({', '.join(own)})" if own else ""
        raise MiddockError(f"this removes {app.name}{also}, its stack, releases and images; repeat with --force")
    out = Output(sys.stdout.buffer)
    if app.parent:  # a preview goes as when its branch is deleted: teardown first
        destroy.destroy(app, out)
        return 0
    if own:
        out.step(f"Destroying the previews of {app.name}: {', '.join(own)}")
    for preview in found:
        destroy.destroy(preview, out)
    crontab.apply(app, [])
    if apps.read_settings(app)["preview-ttl"]:
        crontab.expire_previews_daily(app, False)
    remove_app(app)
    apps.destroy(app)
    print(f"-----> Destroyed {app.name}")
    return 0


def set_setting(app: App, key: str, value: str) -> dict:
    """Save a setting; `gate` also installs the repo's hooks afresh (both read it: an older
    middock's repo has only the one its mode used), `branch` moves the repo's HEAD, `port` moves
    the app's route on the edge, and `preview-ttl` has cron expire previews daily."""
    if app.parent and (key in ("branch", "gate", "previews") or key.startswith("preview-")):
        raise MiddockError(f"{app.name} is a preview of {app.parent}: set {key} on {app.parent}")
    if key == "port":
        check_port(app, int(apps.parse_setting(key, value)))
    settings = apps.write_setting(app, key, value)
    if key == "gate":
        apps.install_hooks(app, sys.executable)
    if key == "branch":
        apps.point_head(app, settings["branch"])
    if key == "port" and routes.load(app).serving:
        Edge(app.home).apply(app)
    if key == "preview-ttl":
        crontab.expire_previews_daily(app, settings["preview-ttl"] is not None)
    return settings


def check_port(app: App, port: int) -> None:
    """An app's port is its own: not another app's, and free on this server."""
    if port == routes.app_port(app):
        return
    others = [other for other in apps.all_apps(app.home) if other.name != app.name]
    if port in routes.taken_ports(others):
        raise MiddockError(f"port {port} is taken by another app")
    if not routes.bindable(port):
        raise MiddockError(f"port {port} is in use on this server")


@command("apps:set", "set branch, gate, keep, port, target or the previews' settings ('off' unsets some)")
@argument("key", choices=sorted(apps.DEFAULT_SETTINGS))
@argument("value")
def cmd_apps_set(args: argparse.Namespace) -> int:
    app = App.named(args.app).require()
    settings = set_setting(app, args.key, args.value)
    print(f"-----> {app.name}: {args.key} = {settings[args.key]}")
    return 0
