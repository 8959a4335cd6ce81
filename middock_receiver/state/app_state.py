"""What an app is doing, in one word: deploying, locked, stopped, not deployed or live."""

from __future__ import annotations

from . import lock, processes, releases
from .apps import App
from .lock import DeployLock


def app_state(app: App) -> str:
    if DeployLock(app).is_held_elsewhere():
        return "deploying"
    if lock.hold_path(app).exists():
        return "locked"
    if processes.is_stopped(app):
        return "stopped"
    if releases.live_number(app) is None:
        return "not deployed"
    return "live"
