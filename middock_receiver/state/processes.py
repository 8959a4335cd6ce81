"""How an app's processes are meant to run, as its people set it: how many containers each
service runs (`ps:scale`, kept for every later deploy, rollback and restart), and whether the
app was stopped (`ps:stop`: it stays stopped until `ps:start` or a deploy)."""

from __future__ import annotations

import json

from ..errors import MiddockError
from .apps import App, write_atomic


def scale_path(app: App):
    return app.state / "scale.json"


def read_scale(app: App) -> dict[str, int]:
    try:
        counts = {str(k): int(v) for k, v in json.loads(scale_path(app).read_text()).items()}
    except FileNotFoundError:
        return {}
    except (ValueError, TypeError, AttributeError) as error:
        raise MiddockError(f"{scale_path(app)} is not a valid record: {error}; fix or remove it") from None
    if any(count < 0 for count in counts.values()):
        raise MiddockError(f"{scale_path(app)} is not a valid record: a negative count")
    return counts


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
