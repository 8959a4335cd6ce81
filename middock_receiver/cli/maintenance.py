"""Maintenance mode: maintenance, maintenance:on, maintenance:off (edge/maintenance.py)."""

from __future__ import annotations

import argparse

from ..edge import maintenance, routes
from ..edge.control import Edge
from ..errors import MiddockError
from ..state import releases
from ..state.apps import App
from .commands import command, emit_json


def behind_the_edge(name: str) -> App:
    app = App.named(name).require()
    if not routes.load(app).serving:
        raise MiddockError(
            f"{app.name} is not served by the edge, so it has no maintenance mode "
            f"(MIDDOCK_WEB in middock.env or config:set {app.name}, then deploy)"
        )
    return app


@command("maintenance", "whether the edge answers the app's requests with its maintenance page", json=True)
def cmd_maintenance(args: argparse.Namespace) -> int:
    app = App.named(args.app).require()
    on = routes.load(app).maintenance
    if args.json:
        return emit_json({"app": app.name, "maintenance": on, "page": str(maintenance.page_path(app))})
    print(f"{app.name}: maintenance {'on' if on else 'off'}")
    return 0


@command("maintenance:on", "answer every request with 503 and the maintenance page; deploys go on behind it")
def cmd_maintenance_on(args: argparse.Namespace) -> int:
    app = behind_the_edge(args.app)
    if not maintenance.page_path(app).exists():  # an app live since before maintenance mode
        live = releases.live(app)
        if live:
            maintenance.install_page(app, releases.folder(app, live.number) / "checkout")
    Edge(app.home).set_maintenance(app, True)
    print(f"-----> {app.name}: maintenance on: every request gets 503 and {maintenance.PAGE}")
    return 0


@command("maintenance:off", "serve the app's live release again")
def cmd_maintenance_off(args: argparse.Namespace) -> int:
    app = behind_the_edge(args.app)
    Edge(app.home).set_maintenance(app, False)
    print(f"-----> {app.name}: maintenance off: the live release serves")
    return 0
