"""The `middock` command: the same words locally and as `ssh deploy@host WORD …`."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict

from dulwich.objectspec import parse_commit
from dulwich.repo import Repo

from .errors import MiddockError, os_error_line
from .follow import submit
from .hook import pusher
from .output import Output
from .pipeline.deploy import recover
from .runtime.compose import compose_program
from .server import account, keys, ssh
from .state import apps, config, lock, releases
from .state.apps import App
from .state.lock import DeployLock, Request

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}


def command(name: str) -> Callable:
    def register(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
        COMMANDS[name] = fn
        return fn

    return register


def when(timestamp: float | None) -> str:
    return "-" if timestamp is None else time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(timestamp))


def emit_json(data: object) -> int:
    print(json.dumps(data, indent=2))
    return 0


def settled(app: App) -> App:
    """The app, with releases left `deploying` by a crashed deploy recorded as interrupted."""
    deploy_lock = DeployLock(app)
    if deploy_lock.path.exists() and deploy_lock.try_acquire():
        say = Output(sys.stderr.buffer)
        try:
            recover(app, compose_program(), say)
        except (MiddockError, OSError) as error:
            say.warn(f"could not settle an interrupted deploy: {error}")
        finally:
            deploy_lock.release()
    return app


def app_state(app: App) -> str:
    if DeployLock(app).is_held_elsewhere():
        return "deploying"
    if lock.hold_path(app).exists():
        return "locked"
    if releases.live_number(app) is None:
        return "not deployed"
    return "live"


@command("apps")
def cmd_apps(args: argparse.Namespace) -> int:
    rows = []
    for app in apps.all_apps():
        live = releases.live(app)
        rows.append(
            {
                "app": app.name,
                "release": live.number if live else None,
                "commit": live.commit if live else None,
                "state": app_state(app),
                "gate": apps.read_settings(app)["gate"],
            }
        )
    if args.json:
        return emit_json(rows)
    if not rows:
        print("no apps yet; create one with: apps:create APP")
    for row in rows:
        release = f"release {row['release']} ({row['commit'][:7]})" if row["release"] else "no release"
        print(f"{row['app']:<24} {release:<24} {row['state']:<12} gate {row['gate']}")
    return 0


@command("apps:create")
def cmd_apps_create(args: argparse.Namespace) -> int:
    app = App.named(args.app)
    apps.create(app, sys.executable)
    if args.gate:
        set_setting(app, "gate", "on")
    print(f"-----> Created {app.name}: push to {app.repo}")
    return 0


@command("apps:destroy")
def cmd_apps_destroy(args: argparse.Namespace) -> int:
    from .pipeline.deploy import destroy_stack

    app = App.named(args.app).require()
    if not args.force:
        raise MiddockError(f"this removes {app.name}, its stack, releases and images; repeat with --force")
    destroy_stack(app)
    apps.destroy(app)
    print(f"-----> Destroyed {app.name}")
    return 0


def set_setting(app: App, key: str, value: str) -> dict:
    """Save a setting; `gate` also swaps the repo's hook (pre-receive in gate mode)."""
    settings = apps.write_setting(app, key, value)
    if key == "gate":
        apps.install_hooks(app, sys.executable, "pre-receive" if settings["gate"] == "on" else "post-receive")
    if key == "branch":
        apps.point_head(app, settings["branch"])
    return settings


def push_mode(settings: dict) -> str:
    return "gate" if settings["gate"] == "on" else "post-receive"


@command("apps:set")
def cmd_apps_set(args: argparse.Namespace) -> int:
    app = App.named(args.app).require()
    settings = set_setting(app, args.key, args.value)
    print(f"-----> {app.name}: {args.key} = {settings[args.key]}")
    return 0


def resolve_ref(app: App, ref: str | None) -> tuple[str, str]:
    """A ref, branch, tag or commit of the app's repo -> (commit sha, ref name)."""
    repo = Repo(str(app.repo))
    name = ref or apps.read_settings(app)["branch"]
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


@command("deploy")
def cmd_deploy(args: argparse.Namespace) -> int:
    app = App.named(args.app).require()
    commit, ref = resolve_ref(app, args.ref)
    return run_deploy(app, Request(commit=commit, ref=ref, pusher=pusher()))


@command("rollback")
def cmd_rollback(args: argparse.Namespace) -> int:
    app = App.named(args.app).require()
    live = releases.live(app)
    if args.release is None:
        if live is None:
            raise MiddockError(f"{app.name} has no live release to roll back from")
        target = releases.previous_good(app, live.number)
        if target is None:
            raise MiddockError(f"{app.name} has no earlier good release to roll back to")
    else:
        target = releases.load(app, args.release)
        if target is None:
            raise MiddockError(f"{app.name} has no release {args.release}")
    if not target.good or not (releases.folder(app, target.number) / "compose.json").exists():
        raise MiddockError(f"release {target.number} cannot be rolled back to: only kept, successful releases can")
    return run_deploy(app, Request(commit=target.commit, ref=target.ref, pusher=pusher(), rollback_to=target.number))


def release_row(release: releases.Release, live: int | None) -> dict:
    row = asdict(release)
    row.update(live=release.number == live, duration=release.duration)
    return row


@command("releases")
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


@command("status")
def cmd_status(args: argparse.Namespace) -> int:
    from .pipeline.deploy import service_status

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
        "services": services,
    }
    if args.json:
        return emit_json(data)
    print(f"=== {app.name} ({data['state']})")
    if live:
        print(f"Live release: {live.number} ({live.kind}) {live.commit} {live.subject}")
        print(f"Deployed:     {when(live.finished)} by {live.pusher}")
    else:
        print("Live release: none")
    print(f"Branch:       {settings['branch']}   gate {settings['gate']}   keep {settings['keep']}")
    if data["mode"] == "gate":
        print("Mode:         gate: deploys before the branch moves; a failed deploy rejects the push")
    else:
        print("Mode:         post-receive: a push is accepted, then deployed")
    for row in services:
        health = f" ({row['health']})" if row["health"] else ""
        print(f"  {row['service']:<16} {row['container']:<32} {row['state']}{health}")
    if not services:
        print("  no containers")
    return 0


@command("logs")
def cmd_logs(args: argparse.Namespace) -> int:
    app = App.named(args.app).require()
    number = args.release or (releases.numbers(app) or [None])[-1]
    if number is None:
        raise MiddockError(f"{app.name} has no releases yet")
    path = releases.folder(app, number) / "log"
    if not path.exists():
        raise MiddockError(f"{app.name} has no log for release {number}")
    sys.stdout.buffer.write(path.read_bytes())
    return 0


@command("config")
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
    return run_deploy(app, Request(commit=live.commit, ref=live.ref, pusher=pusher()))


@command("config:set")
def cmd_config_set(args: argparse.Namespace) -> int:
    app = App.named(args.app).require()
    config.set_vars(app, args.assignments)
    return redeploy(app, args)


@command("config:unset")
def cmd_config_unset(args: argparse.Namespace) -> int:
    app = App.named(args.app).require()
    config.unset_vars(app, args.keys)
    return redeploy(app, args)


@command("lock")
def cmd_lock(args: argparse.Namespace) -> int:
    app = App.named(args.app).require()
    lock.hold(app, " ".join(args.reason) or f"locked by {pusher()}")
    print(f"-----> Deploys of {app.name} are locked")
    return 0


@command("unlock")
def cmd_unlock(args: argparse.Namespace) -> int:
    app = App.named(args.app).require()
    lock.unhold(app)
    print(f"-----> Deploys of {app.name} are unlocked")
    return 0


@command("run")
def cmd_run(args: argparse.Namespace) -> int:
    from .oneoff import run

    return run(App.named(args.app).require(), args.service, args.cmd)


def read_key(file: str) -> str:
    if file == "-":
        return sys.stdin.read()
    try:
        return open(file).read()
    except (OSError, UnicodeDecodeError) as error:
        raise MiddockError(f"cannot read the key file {file}: {getattr(error, 'strerror', None) or error}") from None


@command("keys:add")
def cmd_keys_add(args: argparse.Namespace) -> int:
    user = account.deploy_user(args.user)
    key = keys.parse_public_key(read_key(args.file), args.name)
    with account.acting_as(user):
        added = keys.add(account.authorized_keys(user), key)
    state = "Authorized" if added else "Already authorized:"
    print(f"-----> {state} key {key.name} ({key.type} {key.fingerprint}) for {user.pw_name}")
    return 0


@command("keys:list")
def cmd_keys_list(args: argparse.Namespace) -> int:
    user = account.deploy_user(args.user)
    with account.acting_as(user):
        found = keys.listed(account.authorized_keys(user))
    if args.json:
        return emit_json([key.as_dict() for key in found])
    if not found:
        print(f"no keys for {user.pw_name}; add one with: keys:add NAME FILE")
    for key in found:
        warning = "" if key.name else "   ! unrestricted (not added by middock): remove this line"
        print(f"{key.name or '(no name)':<20} {key.type:<20} {key.fingerprint}  {key.comment}{warning}")
    return 0


@command("keys:remove")
def cmd_keys_remove(args: argparse.Namespace) -> int:
    user = account.deploy_user(args.user)
    with account.acting_as(user):
        keys.remove(account.authorized_keys(user), args.name)
    print(f"-----> Removed key {args.name} of {user.pw_name}")
    return 0


@command("refresh")
def cmd_refresh(args: argparse.Namespace) -> int:
    user = account.deploy_user(args.user)
    refreshed = account.refresh(user)
    print(f"-----> Hooks of {len(refreshed)} app(s) and the keys of {user.pw_name} point at {sys.executable}")
    return 0


@command("ssh-serve")
def cmd_ssh_serve(args: argparse.Namespace) -> int:
    return ssh.serve(args.key, COMMANDS, main)


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line and exit 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f" !     {self.prog}: {message}\n")
        sys.exit(2)


def parser() -> argparse.ArgumentParser:
    top = Parser(prog="middock", description="git push to deploy a docker compose stack")
    sub = top.add_subparsers(dest="command", required=True, parser_class=Parser)

    def add(name: str, help: str, *, app: bool = True, json: bool = False) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help)
        if app:
            p.add_argument("app")
        if json:
            p.add_argument("--json", action="store_true", help="machine-readable output")
        return p

    add("apps", "list apps with their live release and state", app=False, json=True)
    add("apps:create", "create an app").add_argument(
        "--gate", action="store_true", help="reject pushes whose deploy fails"
    )
    add("apps:destroy", "stop the stack and remove everything of the app").add_argument("--force", action="store_true")
    p = add("apps:set", "set branch, gate or keep")
    p.add_argument("key", choices=sorted(apps.DEFAULT_SETTINGS))
    p.add_argument("value")
    add("deploy", "deploy the branch head (or REF) again").add_argument("ref", nargs="?")
    add("status", "live release and services", json=True)
    add("releases", "release history", json=True)
    add("rollback", "go back to the previous (or the named) good release").add_argument("release", nargs="?", type=int)
    add("logs", "the stored output of a deploy").add_argument("release", nargs="?", type=int)
    p = add("config", "the app's config vars", json=True)
    p.add_argument("--reveal", action="store_true", help="show the values")
    for name, arg, help in (("config:set", "assignments", "KEY=VALUE"), ("config:unset", "keys", "KEY")):
        p = add(name, f"change config vars ({help}…) and redeploy")
        p.add_argument(arg, nargs="+", metavar=help)
        p.add_argument("--no-deploy", action="store_true", help="do not redeploy")
    add("lock", "hold deploys of the app").add_argument("reason", nargs="*")
    add("unlock", "allow deploys of the app again")
    p = add("run", "run a command in a one-off container of the live release")
    p.add_argument("service")
    p.add_argument("cmd", nargs=argparse.REMAINDER, metavar="CMD")
    p = add("keys:add", "authorize an SSH public key for pushes and commands (as root)", app=False)
    p.add_argument("name", help="who the key is: recorded as the pusher")
    p.add_argument("file", help="the .pub file, or - to read it from stdin")
    user_options = [p, add("keys:list", "the authorized keys", app=False, json=True)]
    user_options.append(add("keys:remove", "remove a key", app=False))
    user_options[-1].add_argument("name")
    user_options.append(add("refresh", "point apps' hooks and keys at this installation (install.sh)", app=False))
    for p in user_options:
        p.add_argument("--user", help="the deploy user, when run as root (default: deploy)")
    add("ssh-serve", "the forced command of every key (sshd runs it)", app=False).add_argument("--key", required=True)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    sys.stdout.reconfigure(line_buffering=True)  # our lines before a deploy's streamed output
    args = parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except MiddockError as error:
        sys.stderr.write(f" !     {error}\n")
        return 1
    except BrokenPipeError:
        return 1
    except OSError as error:
        sys.stderr.write(f" !     {os_error_line(error)}; nothing was changed\n")
        return 1


if __name__ == "__main__":
    sys.exit(main())
