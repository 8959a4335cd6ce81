"""Deploying and what it leaves: deploy, rollback, releases, status, the deploy output, config
vars, the deploy lock and one-off commands."""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict

from .. import __version__
from ..edge.control import Edge
from ..errors import MiddockError, quoted
from ..jobs.listing import jobs_table
from ..output import Output
from ..push.follow import pusher, submit
from ..server import account
from ..settings import BRANCH_MAX
from ..state import apps, config, lock, previews, releases
from ..state.app_state import app_state
from ..state.apps import App
from ..state.lock import DeployLock, Request
from .commands import argument, command, emit_json, when


def settled(app: App) -> App:
    """The app, with what a crashed deploy left settled (its release recorded as interrupted,
    exactly the live release running)."""
    deploy_lock = DeployLock(app)
    if releases.unsettled(app) and deploy_lock.try_acquire():
        from ..pipeline.recovery import recover  # the pipeline and the SDK, only when a deploy crashed

        say = Output(sys.stderr.buffer)
        try:
            recover(app, say)
        except (MiddockError, OSError) as error:
            say.warn(f"could not settle an interrupted deploy: {error}")
        finally:
            deploy_lock.release()
    return app


def push_mode(settings: dict) -> str:
    return "gate" if settings["gate"] == "on" else "post-receive"


def resolve_ref(app: App, ref: str | None) -> tuple[str, str]:
    """A ref, branch, tag or commit of the app's repo -> (commit sha, ref name)."""
    from dulwich.objectspec import parse_commit  # dulwich only for the commands that read the repo
    from dulwich.repo import Repo

    repo = Repo(str(app.repo))
    name = apps.read_settings(app)["branch"] if ref is None else ref
    if not (name.isprintable() and 0 < len(name) <= BRANCH_MAX):  # UTF-8, one line, a file name's length
        raise MiddockError(f"{quoted(name)} is not a branch, tag or commit of {app.name}")
    for candidate in (f"refs/heads/{name}", f"refs/tags/{name}", name):
        if candidate.encode() in repo.refs:
            return parse_commit(repo, candidate.encode()).id.decode(), candidate
    try:
        return parse_commit(repo, name.encode()).id.decode(), name
    except (KeyError, ValueError):
        raise MiddockError(f"{name!r} is not a branch, tag or commit of {app.name}") from None


def run_deploy(app: App, request: Request) -> int:
    """Deploy with the output on stdout and, on failure, the error line on stderr too."""
    return submit(app, request, sys.stdout.buffer, sys.stderr.buffer)


def redeploy_live(app: App) -> int:
    """Deploy the live release's commit again, with the config vars as they are now."""
    live = releases.live(app)
    assert live is not None
    return run_deploy(app, Request(commit=live.commit, ref=live.ref, pusher=pusher()))


def rerun_live(app: App, reason: str) -> int:
    """Run the live release again without a build (a restart, a new scale, a start): through
    the edge, the same zero-downtime path as any deploy."""
    live = releases.live(app)
    if live is None:
        raise MiddockError(f"{app.name} has no live release; deploy it first")
    return run_deploy(
        app, Request(commit=live.commit, ref=live.ref, pusher=pusher(), restore=live.number, reason=reason)
    )


@command("deploy", "deploy the branch head (or REF) again")
@argument("ref", nargs="?")
def cmd_deploy(args: argparse.Namespace) -> int:
    app = App.named(args.app).require()
    commit, ref = resolve_ref(app, args.ref)
    return run_deploy(app, Request(commit=commit, ref=ref, pusher=pusher()))


@command("rollback", "go back to the previous (or the named) good release")
@argument("release", nargs="?", type=int)
def cmd_rollback(args: argparse.Namespace) -> int:
    app = App.named(args.app).require()
    live = releases.live(app)
    if args.release is None:
        if live is None:
            raise MiddockError(f"{app.name} has no live release to roll back from")
        target = releases.previous_good(app, live)
        if target is None:
            raise MiddockError(f"{app.name} has no earlier good release to roll back to")
    else:
        target = releases.load(app, args.release)
        if target is None:
            raise MiddockError(f"{app.name} has no release {args.release}")
    if not target.good or not (releases.folder(app, target.number) / "compose.json").exists():
        raise MiddockError(f"release {target.number} cannot be rolled back to: only kept, successful releases can")
    return run_deploy(app, Request(commit=target.commit, ref=target.ref, pusher=pusher(), restore=target.number))


def release_row(release: releases.Release, live: int | None) -> dict:
    row = asdict(release)
    row.update(live=release.number == live, duration=release.duration)
    return row


@command("releases", "release history", json=True)
def cmd_releases(args: argparse.Namespace) -> int:
    app = settled(App.named(args.app).require())
    live = releases.live_number(app)
    history = releases.history(app)
    if args.json:
        return emit_json([release_row(r, live) for r in history])
    if not history:
        print(f"{app.name} has no releases yet")
    for r in reversed(history):
        duration = f"{r.duration:.1f}s" if r.duration is not None else "-"
        result = r.result + (" (pruned)" if r.pruned else "") + (" <- live" if r.number == live else "")
        what = r.subject if r.kind == "deploy" else r.kind
        started = when(r.started)
        print(f"v{r.number:<4} {r.commit[:7]}  {started}  {duration:>7}  {r.pusher:<16.16} {what[:40]:<40}  {result}")
    return 0


def routes_of(app: App, live: releases.Release | None) -> list[dict]:
    """Where the app is served and which release each route reaches."""
    if not (live and live.slot):
        return []
    return [{"url": url, "release": live.number, "slot": live.slot} for url in Edge(app.home).urls(app)]


@command("status", "live release, routes and services", json=True)
def cmd_status(args: argparse.Namespace) -> int:
    from ..operate.running import service_status

    app = settled(App.named(args.app).require())
    live = releases.live(app)
    settings = apps.read_settings(app)
    services = service_status(app)
    data = {
        "app": app.name,
        "state": app_state(app),
        "live": release_row(live, live.number) if live else None,
        "settings": settings,
        "mode": push_mode(settings),
        "routes": routes_of(app, live),
        "services": services,
        "jobs": jobs_table(app),
        "not_owned": account.not_owned(app.home, [app.name]),
        "preview_of": app.parent,
        "previews": sorted(preview.name for preview in previews.of_parent(app)),
        "version": __version__,  # middock's, on the server that answers
    }
    if args.json:
        return emit_json(data)
    if data["not_owned"]:
        sys.stderr.write(f" !     Warning: {account.not_owned_warning(app.home, data['not_owned'])}\n")
    print(f"=== {app.name} ({data['state']})")
    if live:
        print(f"Live release: {live.number} ({live.kind}) {live.commit} {live.subject}")
        print(f"Deployed:     {when(live.finished)} by {live.pusher}")
    else:
        print("Live release: none")
    print(f"Branch:       {settings['branch']}   gate {settings['gate']}   keep {settings['keep']}")
    if app.parent:
        print(f"Preview of:   {app.parent} (destroyed with its branch, or by previews:destroy)")
    if data["previews"]:
        print(f"Previews:     {' '.join(data['previews'])}")
    if data["mode"] == "gate":
        print("Mode:         gate: deploys before the branch moves; a failed deploy rejects the push")
    else:
        print("Mode:         post-receive: a push is accepted, then deployed")
    for route in data["routes"]:
        print(f"Route:        {route['url']} -> release {route['release']} ({route['slot']})")
    for row in services:
        health = f" ({row['health']})" if row["health"] else ""
        node = f"  on {row['node']}" if row.get("node") else ""
        print(f"  {row['service']:<16} {row['container']:<32} {row['state']}{health}{node}")
    if not services:
        print("  no containers")
    for job in data["jobs"]:
        upcoming = "suspended" if job["suspended"] else f"next {job['next_run']}"
        print(f"Job:          {job['name']:<16} {job['schedule']:<16} {upcoming}")
    print(f"middock {data['version']} on this server")
    return 0


@command("releases:output", "the stored output of a deploy (default: the latest)")
@argument("release", nargs="?", type=int)
def cmd_releases_output(args: argparse.Namespace) -> int:
    return print_output(App.named(args.app).require(), args.release)


def print_output(app: App, number: int | None) -> int:
    """The deploy's output; under a failed deploy's, the last lines of its containers."""
    number = number or (releases.numbers(app) or [None])[-1]
    if number is None:
        raise MiddockError(f"{app.name} has no releases yet")
    path = releases.folder(app, number) / "log"
    if not path.exists():
        raise MiddockError(f"{app.name} has no output stored for release {number}")
    sys.stdout.buffer.write(path.read_bytes())
    release = releases.load(app, number)
    if release is not None and release.result == releases.FAILED:
        print_last_lines(app, number)
    return 0


def print_last_lines(app: App, number: int) -> None:
    """Each container's last kept_logs.SHOWN_WHEN_FAILED lines, under a heading of its own."""
    from ..pipeline import kept_logs  # compose's plan and dotenv, only for a failed release's output

    for label, lines in kept_logs.by_container(app, number).items():
        shown = lines[-kept_logs.SHOWN_WHEN_FAILED :]
        which = "its last lines" if len(shown) == len(lines) else f"its last {len(shown)} of {len(lines)} lines"
        sys.stdout.buffer.write(f"-----> Container {label}: {which}\n".encode())
        sys.stdout.buffer.writelines(b"       " + text + b"\n" for text in shown)


@command("config", "the app's config vars", json=True)
@argument("--reveal", action="store_true", help="show the values")
def cmd_config(args: argparse.Namespace) -> int:
    app = App.named(args.app).require()
    values = config.read_vars(app)
    shown = values if args.reveal else {k: "*****" for k in values}
    if args.json:
        return emit_json(shown)
    for key, value in shown.items():
        print(f"{key}={value}")
    return 0


def redeploy(app: App, args: argparse.Namespace) -> int:
    live = releases.live(app)
    if args.no_deploy or live is None:
        print("-----> Config saved; it applies from the next deploy")
        return 0
    print(f"-----> Config saved; redeploying {live.commit[:7]}")
    return redeploy_live(app)


@command("config:set", "change config vars (KEY=VALUE…) and redeploy")
@argument("assignments", nargs="+", metavar="KEY=VALUE")
@argument("--no-deploy", action="store_true", help="do not redeploy")
def cmd_config_set(args: argparse.Namespace) -> int:
    app = App.named(args.app).require()
    config.set_vars(app, args.assignments)
    return redeploy(app, args)


@command("config:unset", "remove config vars (KEY…) and redeploy")
@argument("keys", nargs="+", metavar="KEY")
@argument("--no-deploy", action="store_true", help="do not redeploy")
def cmd_config_unset(args: argparse.Namespace) -> int:
    app = App.named(args.app).require()
    config.unset_vars(app, args.keys)
    return redeploy(app, args)


@command("lock", "hold deploys of the app")
@argument("reason", nargs="*")
def cmd_lock(args: argparse.Namespace) -> int:
    app = App.named(args.app).require()
    lock.hold(app, " ".join(args.reason) or f"locked by {pusher()}")
    print(f"-----> Deploys of {app.name} are locked")
    return 0


@command("unlock", "allow deploys of the app again")
def cmd_unlock(args: argparse.Namespace) -> int:
    app = App.named(args.app).require()
    lock.unhold(app)
    print(f"-----> Deploys of {app.name} are unlocked")
    return 0


@command("run", "run a command in a one-off container of the live release")
@argument("service")
@argument("cmd", nargs=argparse.REMAINDER, metavar="CMD")
def cmd_run(args: argparse.Namespace) -> int:
    from ..operate.oneoff import run

    return run(App.named(args.app).require(), args.service, args.cmd)
