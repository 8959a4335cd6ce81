"""How the dashboard words times, sizes and an app's row: the same text in the page and in the
events that update it."""

from __future__ import annotations

import time


def when(moment: float | None) -> str:
    return "-" if moment is None else time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(moment))


def ago(moment: float | None, now: float | None = None) -> str:
    if moment is None:
        return "-"
    elapsed = max((now or time.time()) - moment, 0)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if elapsed >= size:
            return f"{int(elapsed // size)} {unit} ago"
    return f"{int(elapsed)} s ago"


def seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} s"


def size(value: int | None) -> str:
    if value is None:
        return "-"
    for unit in ("B", "KiB", "MiB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def release_text(release: dict | None) -> str:
    if release is None:
        return "none"
    return f"v{release['number']} {release['commit']} {release['subject']}"


def last_text(release: dict | None) -> str:
    if release is None:
        return "never deployed"
    by = f" by {release['pusher']}" if release["pusher"] else ""
    took = f" in {seconds(release['duration'])}" if release["duration"] is not None else ""
    return f"v{release['number']}{by}, {ago(release['started'])}{took}: {release['result']}"


def row(found: dict) -> dict:
    """An app's row on the apps page as text, field by field (the script sets each with textContent)."""
    return {
        "name": found["name"],
        "state": found["state"],
        "live": release_text(found["live"]),
        "health": found["health"],
        "urls": found["urls"],
        "last": last_text(found["last"]),
        "maintenance": "on" if found["maintenance"] else "off",
        "previews": str(found["previews"]),
        "next_cron": found["next_cron"] or "-",
    }
