"""The running app: its containers, their output, how many run, stop, start and restart."""

from __future__ import annotations

import argparse
import sys

from ..errors import MiddockError
from ..operate import running
from ..pipeline import stacks
from ..runtime import overrides, side_by_side
from ..state import processes, releases
from ..state.apps import App
from .commands import argument, command, emit_json
from .releases import print_output, rerun_live


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    return f"{days}d{hours}h" if days else f"{hours}h{minutes}m" if hours else f"{minutes}m{secs}s"


@command("ps", "every container of the live release: state, health, uptime, restarts", json=True)
def cmd_ps(args: argparse.Namespace) -> int:
    app = App.named(args.app).require()
    rows = running.ps(app)
    if args.json:
        return emit_json(rows)
    live = releases.live(app)
    assert live is not None
    where = f" ({live.slot}) at {' '.join(rows[0]['routes'])}" if rows and rows[0]["routes"] else ""
    stopped = " (stopped: ps:start starts it)" if processes.is_stopped(app) else ""
    print(f"=== {app.name} release {live.number}{where}{stopped}")
    for row in rows:
        label = f"{row['service']}.{row['number']}"
        state = row["state"] + (f" ({row['health']})" if row["health"] else "")
        print(
            f"{label:<20} {state:<22} up {duration(row['uptime']):<8} restarts {row['restarts']:<3} {row['container']}"
        )
    if not rows:
        print("no containers")
    return 0


@command("logs", "the app's output, each line with its release and service, across deploys; -t follows the live one")
@argument("-t", "--tail", dest="follow", action="store_true", help="follow new lines until Ctrl-C")
@argument("-n", "--num", type=int, default=None, metavar="N", help="the last N lines (default: all; 10 with -t)")
@argument("--service", "-s", help="only this service")
@argument("--release", type=int, help="the stored output of deploy N instead (releases:output)")
def cmd_logs(args: argparse.Namespace) -> int:
    app = App.named(args.app).require()
    if args.release is not None:
        return print_output(app, args.release)
    if args.num is not None and args.num < 0:
        raise MiddockError(f"-n takes a number of lines, not {args.num}")
    return running.logs(app, sys.stdout.buffer, args.num, args.follow, args.service)


def current_counts(app: App) -> dict[str, int]:
    live = running.live_release(app)
    return {name: overrides.replicas(spec) for name, spec in stacks.pinned_config(app, live)["services"].items()}


@command("ps:scale", "show, or set, how many containers of each service run (SERVICE=N…)")
@argument("counts", nargs="*", metavar="SERVICE=N")
def cmd_ps_scale(args: argparse.Namespace) -> int:
    app = App.named(args.app).require()
    if not args.counts:
        for service, count in current_counts(app).items():
            print(f"{service}={count}")
        return 0
    counts = overrides.parse_counts(args.counts)
    live = running.live_release(app)
    pinned = stacks.pinned_config(app, live)
    web = side_by_side.web_target(stacks.release_env(app, live)) if live.slot else None
    overrides.check_counts(pinned, counts, web.service if web else None)
    if web and counts.get(web.service) == 0:
        raise MiddockError(f"{web.service} serves the app through the edge and cannot be scaled to 0: use ps:stop")
    processes.write_scale(app, counts)
    change = " ".join(f"{service}={count}" for service, count in counts.items())
    if processes.is_stopped(app):
        print(f"-----> {app.name}: {change}, from ps:start on (the app is stopped)")
        return 0
    print(f"-----> {app.name}: {change}")
    return rerun_live(app, f"scale {change}")


@command("ps:restart", "restart the live release (through the edge without dropping a request), or one service")
@argument("service", nargs="?")
def cmd_ps_restart(args: argparse.Namespace) -> int:
    app = App.named(args.app).require()
    live = running.live_release(app)
    if processes.is_stopped(app):
        raise MiddockError(f"{app.name} is stopped; start it with: ps:start {app.name}")
    web = side_by_side.web_target(stacks.release_env(app, live)) if live.slot else None
    if args.service is None or (web and args.service == web.service):
        if args.service:
            stacks.check_service(app, live, args.service)
        return rerun_live(app, "restart")
    running.restart_service(app, args.service)
    print(f"-----> Restarted {args.service} of {app.name} (release {live.number})")
    return 0


@command("ps:stop", "stop the app; it stays stopped, a reboot too, until ps:start or a deploy")
def cmd_ps_stop(args: argparse.Namespace) -> int:
    app = App.named(args.app).require()
    running.stop(app)
    print(f"-----> Stopped {app.name}: it stays stopped until ps:start {app.name} or a deploy")
    return 0


@command("ps:start", "start the live release again")
def cmd_ps_start(args: argparse.Namespace) -> int:
    app = App.named(args.app).require()
    running.live_release(app)
    return rerun_live(app, "start")
