"""How an app's processes are meant to run, as its people set it: how many containers each
service runs (`ps:scale`, kept for every later deploy, rollback and restart), and whether the
app was stopped (`ps:stop`: it stays stopped until `ps:start` or a deploy)."""

from __future__ import annotations

import json
import re

from . import records
from .apps import App, write_atomic

SERVICE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\Z")  # a Compose service's (ps:scale, middock.cron)
MAX_SCALE = 100  # containers of one service


def scale_path(app: App):
    return app.state / "scale.json"


def read_scale(app: App) -> dict[str, int]:
    """The counts `ps:scale` set, checked as it checks them."""
    path = scale_path(app)
    stored = records.read_json(path)
    if stored is None:
        return {}
    with records.checked(path):
        if not isinstance(stored, dict):
            raise ValueError("not a JSON object")
        for service, count in stored.items():
            if not SERVICE_NAME.match(service) or not records.conforms(count, int) or not 0 <= count <= MAX_SCALE:
                raise ValueError(f"{service!r:.60}: {count!r:.40} is not a count from 0 to {MAX_SCALE}")
        return stored


def write_scale(app: App, counts: dict[str, int]) -> dict[str, int]:
    merged = {**read_scale(app), **counts}
    write_atomic(scale_path(app), json.dumps(merged, indent=2, sort_keys=True) + "\n")
    return merged


def stopped_path(app: App):
    return app.state / "stopped"


def is_stopped(app: App) -> bool:
    return stopped_path(app).exists()


def set_stopped(app: App, stopped: bool) -> None:
    if stopped:
        write_atomic(stopped_path(app), "stopped by ps:stop; ps:start or a deploy starts it again\n")
    else:
        stopped_path(app).unlink(missing_ok=True)
