"""What each page of the dashboard shows, as plain data read from the home's records and one
question to Docker a page: no web framework here, so it is tested without a browser.

Nothing here changes anything (a crashed deploy is settled by the next command or deploy, not by
looking at it), and no config value ever leaves: only the names.
"""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from urllib.parse import urlsplit

from ..edge import caddy, routes
from ..edge.control import Edge
from ..errors import MiddockError
from ..jobs import runs
from ..jobs.listing import jobs_table
from ..notify import webhooks
from ..operate.running import container_rows, uptime
from ..pipeline import kept_logs, stacks
from ..runtime.compose import PROJECT_LABEL
from ..runtime.engine import docker_client
from ..server.roles import ADMIN, Grant
from ..state import config, previews, releases
from ..state.app_state import app_state
from ..state.apps import App, all_apps

LOG_BYTES_SHOWN = 2 << 20  # of a release's stored output; the rest is `releases:output`'s
JOB_OUTPUT_SHOWN = 4096  # bytes of the end of a job's last run


def parents(home: Path) -> dict[App, str | None]:
    """Every app of the home and the app it is a preview of (None: none), in one look; an app whose
    preview record cannot be read is left out (a command on it names the file)."""
    found: dict[App, str | None] = {}
    for app in all_apps(home):
        try:
            found[app] = app.parent
        except MiddockError:
            continue
    return found


def held(found: dict[App, str | None], grant: Grant) -> list[App]:
    """Of `parents`' apps, those (not previews) the session's key holds, by name."""
    return [app for app, parent in found.items() if parent is None and grant.holds(app.name)]


def visible_apps(home: Path, grant: Grant) -> list[App]:
    return held(parents(home), grant)


def may_see(app: App, grant: Grant) -> bool:
    return grant.holds(app.name) or bool(app.parent and grant.holds(app.parent))


def release_summary(release: releases.Release | None) -> dict | None:
    if release is None:
        return None
    return {
        "number": release.number,
        "commit": release.commit[:7],
        "subject": release.subject if release.kind == "deploy" else release.kind,
        "pusher": release.pusher,
        "started": release.started,
        "duration": release.duration,
        "result": release.result,
    }


def newest_release(app: App) -> releases.Release | None:
    numbers = releases.numbers(app)
    return releases.load(app, numbers[-1]) if numbers else None


def running_counts() -> dict[str, tuple[int, int, int]] | None:
    """Per Compose project: (containers, running, unhealthy), from one listing of Docker's (its
    summary, not an inspection of each); None when Docker does not answer."""
    try:
        listed = docker_client().containers.list(all=True, sparse=True, filters={"label": PROJECT_LABEL})
    except Exception:  # noqa: BLE001 - the page says Docker did not answer, whatever the reason
        return None
    counts: dict[str, tuple[int, int, int]] = {}
    for container in listed:
        project = container.attrs.get("Labels", {}).get(PROJECT_LABEL, "")
        total, up, sick = counts.get(project, (0, 0, 0))
        running = container.attrs.get("State") == "running"
        unhealthy = "(unhealthy)" in container.attrs.get("Status", "")
        counts[project] = (total + 1, up + running, sick + unhealthy)
    return counts


def health_text(counts: dict[str, tuple[int, int, int]] | None, app: App, live: releases.Release | None) -> str:
    if live is None:
        return "-"
    if counts is None:
        return "Docker did not answer"
    total, up, sick = counts.get(stacks.project(app, live), (0, 0, 0))
    if total == 0:
        return "no containers (on the Swarm, see the app)" if live.pushed else "no containers"
    return f"{up}/{total} running" + (f", {sick} unhealthy" if sick else "")


def app_row(app: App, counts: dict | None, previews_of: Counter[str]) -> dict:
    """One app on the apps page (`counts`: running_counts, `previews_of`: preview_counts)."""
    live = releases.live(app)
    edge = routes.load(app)
    upcoming = [job["next_run"] for job in jobs_table(app) if job["next_run"]]
    return {
        "name": app.name,
        "state": app_state(app),
        "live": release_summary(live),
        "health": health_text(counts, app, live),
        "urls": Edge(app.home).urls(app) if live else [],
        "domains": list(edge.domains),
        "last": release_summary(newest_release(app)),
        "maintenance": edge.maintenance,
        "previews": previews_of[app.name],
        "next_cron": min(upcoming) if upcoming else None,
    }


def preview_counts(found: dict[App, str | None]) -> Counter[str]:
    """How many previews each app has, from `parents`."""
    return Counter(parent for parent in found.values() if parent)


def fresh_row(app: App) -> dict:
    """One app's row on its own (an event of the apps page)."""
    return app_row(app, running_counts(), preview_counts(parents(app.home)))


def overview(home: Path, grant: Grant) -> list[dict]:
    found = parents(home)
    counts, previews_of = running_counts(), preview_counts(found)
    return [row_or_problem(app, counts, previews_of) for app in held(found, grant)]


def row_or_problem(app: App, counts: dict | None, previews_of: Counter[str]) -> dict:
    """The app's row; one whose records cannot be read says so in its state, and the others show."""
    try:
        return app_row(app, counts, previews_of)
    except MiddockError as error:
        empty = {"live": None, "health": "-", "urls": [], "domains": [], "last": None, "maintenance": False}
        return {"name": app.name, "state": f"unreadable: {error}", **empty, "previews": 0, "next_cron": None}


def app_signature(app: App) -> tuple:
    """What changes when the app's row does: its newest release and its result, the live one,
    its state and maintenance (the apps page's events are sent when this changes)."""
    newest = newest_release(app)
    return (
        newest and (newest.number, newest.result),
        releases.live_number(app),
        app_state(app),
        routes.load(app).maintenance,
    )


def containers(app: App, live: releases.Release | None) -> list[dict]:
    try:
        rows = container_rows(app, live)
    except Exception:  # noqa: BLE001 - as on the apps page
        return []
    for row in rows:
        row["uptime"] = uptime(row["started"])
    return rows


def stats(app: App) -> dict:
    """CPU and memory of each running container of the live release, from one sample each
    (taken side by side); `measured` False when the engine gives none (rootless Docker on a
    kernel with cgroup v1)."""
    live = releases.live(app)
    if live is None:
        return {"measured": True, "containers": {}}
    client = docker_client()
    running = client.containers.list(filters={"label": f"{PROJECT_LABEL}={stacks.project(app, live)}"})
    with ThreadPoolExecutor(max_workers=8) as pool:
        samples = list(pool.map(lambda c: (c.name, c.stats(stream=False)), running))
    found = {name: usage(sample) for name, sample in samples}
    measured = any(value["memory"] is not None for value in found.values()) or not found
    return {"measured": measured, "containers": found}


def usage(sample: dict) -> dict:
    """CPU percent and memory bytes of one `docker stats` sample (None where it holds none)."""
    memory = sample.get("memory_stats", {}).get("usage")
    cpu, pre = sample.get("cpu_stats", {}), sample.get("precpu_stats", {})
    cpu_delta = cpu.get("cpu_usage", {}).get("total_usage", 0) - pre.get("cpu_usage", {}).get("total_usage", 0)
    system_delta = cpu.get("system_cpu_usage", 0) - pre.get("system_cpu_usage", 0)
    cores = cpu.get("online_cpus") or 1
    percent = cpu_delta / system_delta * cores * 100 if system_delta > 0 and cpu_delta >= 0 else None
    return {"cpu": None if memory is None else percent, "memory": memory}


def shown_url(url: str) -> str:
    """A webhook's address without its path and query, where services put their tokens."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}{'/…' if parts.path not in ('', '/') or parts.query else '/'}"


def app_detail(app: App, grant: Grant) -> dict:
    """Everything the app's page shows."""
    live = releases.live(app)
    history = list(reversed(releases.history(app)))
    edge = routes.load(app)
    paths = Edge(app.home).paths
    jobs = jobs_table(app)
    for job in jobs:
        job_runs = runs.history(app, job["name"])
        job["runs"] = [asdict(run) for run in reversed(job_runs[-5:])]
        job["output"] = last_output(app, job["name"], job_runs[-1].number) if job_runs and grant.role == ADMIN else None
    return {
        "name": app.name,
        "parent": app.parent,
        "state": app_state(app),
        "live": release_summary(live),
        "releases": [dict(release_summary(r) or {}, good=r.good, kind=r.kind) for r in history],
        "containers": containers(app, live),
        "urls": Edge(app.home).urls(app) if live else [],
        "domains": [{"name": name, "certificate": caddy.certificate(paths, name)} for name in edge.domains],
        "maintenance": edge.maintenance,
        "behind_edge": bool(live and live.slot),
        "jobs": jobs,
        "job_output": grant.role == ADMIN,  # cron:output is an admin's
        "previews": [
            {"name": preview.name, "branch": record.branch, "urls": Edge(app.home).urls(preview)}
            for preview, record in sorted(previews.of_parent(app).items(), key=lambda item: item[0].name)
        ],
        "webhooks": [
            {"url": shown_url(hook.url), "events": list(hook.events), "last": last_outcome(app, hook.url)}
            for hook in webhooks.load(app)
        ],
        "config": sorted(config.read_vars(app)),  # the names only
    }


def last_output(app: App, job: str, number: int) -> str:
    """The end of a job run's output (cron:output has all of it): an admin's to see, as over SSH."""
    try:
        with runs.output_path(app, job, number).open("rb") as output:
            output.seek(0, 2)
            output.seek(max(output.tell() - JOB_OUTPUT_SHOWN, 0))
            return output.read().decode(errors="replace")
    except FileNotFoundError:
        return ""


def last_outcome(app: App, url: str) -> str:
    outcome = webhooks.last_outcome(app, url)
    if outcome is None:
        return "never sent"
    return f"{outcome.event}: {outcome.result}"


def release_output(app: App, number: int) -> dict | None:
    """A release's stored deploy output (its first LOG_BYTES_SHOWN), and under a failed one each
    container's last lines; None: no such release."""
    release = releases.load(app, number)
    if release is None:
        return None
    path = releases.folder(app, number) / "log"
    try:
        with path.open("rb") as log:
            data = log.read(LOG_BYTES_SHOWN + 1)
    except FileNotFoundError:
        data = b""
    containers = kept_logs.by_container(app, number) if release.result == releases.FAILED else {}
    return {
        "release": release_summary(release),
        "kind": release.kind,
        "message": release.message,
        "output": data[:LOG_BYTES_SHOWN].decode(errors="replace"),
        "cut": len(data) > LOG_BYTES_SHOWN,
        "containers": {
            label: [line.decode(errors="replace") for line in lines[-kept_logs.SHOWN_WHEN_FAILED :]]
            for label, lines in containers.items()
        },
        "deploying": release.result == releases.DEPLOYING,
    }
