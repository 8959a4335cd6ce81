"""The edge (local only): its state, start and stop, its settings; and each app's domains."""

from __future__ import annotations

import argparse
import os
import pwd
import sys
from pathlib import Path

from .. import daemons
from ..edge import caddy, routes
from ..edge.control import Edge
from ..edge.settings import write_settings
from ..errors import MiddockError
from ..server import account
from ..state import apps, releases
from ..state.apps import App
from .commands import argument, command, emit_json

USER_OPTION = (("--user",), {"help": "the deploy user whose edge it is, when run as root (default: deploy)"})


def edge_user(args: argparse.Namespace) -> pwd.struct_passwd:
    """Whose edge: `MIDDOCK_HOME`'s (a test, a second home) is ours; else the deploy user's."""
    if os.environ.get("MIDDOCK_HOME"):
        return pwd.getpwuid(os.getuid())
    return account.deploy_user(args.user)


def edge_of(user: pwd.struct_passwd) -> Edge:
    return Edge(Path(os.environ.get("MIDDOCK_HOME") or user.pw_dir))


def as_the_user(user: pwd.struct_passwd) -> None:
    """Root starting or stopping a deploy user's edge without systemd: run this very command as
    that user, keeping only the right to bind ports 80 and 443, so the proxies and every file
    they write are the user's."""
    os.execvp(
        "setpriv",
        [
            "setpriv",
            f"--reuid={user.pw_uid}",
            f"--regid={user.pw_gid}",
            "--init-groups",
            "--inh-caps=+net_bind_service",
            "--ambient-caps=+net_bind_service",
            "--",
            sys.executable,
            "-m",
            "middock_receiver",
            *sys.argv[1:],
        ],
    )


def handed_over(user: pwd.struct_passwd) -> bool:
    owner = daemons.Owner.of(user)
    if os.geteuid() == 0 and owner.uid != 0 and not daemons.uses_systemd(owner):
        as_the_user(user)  # does not return
    return False


@command("edge", "is the edge running; its ports, routes and certificates", app=False, json=True)
@argument(*USER_OPTION[0], **USER_OPTION[1])
def cmd_edge(args: argparse.Namespace) -> int:
    edge = edge_of(edge_user(args))
    settings = edge.settings
    data = {
        "running": {"haproxy": edge.running(), "caddy": edge.caddy.answers()},
        "settings": settings.as_dict(),
        "routes": [route_row(edge, App(fe.app, edge.paths.home)) for fe in edge.frontends()],
    }
    if args.json:
        return emit_json(data)
    state = ", ".join(f"{proxy} {'running' if up else 'stopped'}" for proxy, up in data["running"].items())
    print(f"=== edge ({state})")
    print(f"Ports:  http {settings.http_port}, https {settings.https_port}, tls {settings.tls}")
    for row in data["routes"]:
        release = f"release {row['release']} ({row['slot']})" if row["release"] else "no release"
        print(f"  {row['app']:<24} port {row['port']:<6} -> {release}")
        for domain in row["domains"]:
            print(f"      https://{domain['name']}/  certificate {domain['certificate']}")
    if not data["routes"]:
        print("  no routes yet: an app gets one at its first deploy with MIDDOCK_WEB")
    return 0


def route_row(edge: Edge, app: App) -> dict:
    live = releases.live(app)
    record = routes.load(app)
    return {
        "app": app.name,
        "port": routes.app_port(app),
        "urls": edge.urls(app),
        "release": live.number if live and live.slot else None,
        "slot": record.serving,
        "domains": [{"name": name, "certificate": caddy.certificate(edge.paths, name)} for name in record.domains],
    }


@command("edge:start", "start the edge's proxies (systemd units where systemd runs)", app=False)
@argument(*USER_OPTION[0], **USER_OPTION[1])
def cmd_edge_start(args: argparse.Namespace) -> int:
    user = edge_user(args)
    handed_over(user)
    edge = edge_of(user)
    with account.acting_as(user):
        edge.write()
    edge.start(daemons.Owner.of(user))
    settings = edge.settings
    print(f"-----> The edge is running: http on {settings.http_port}, https on {settings.https_port}")
    for fe in edge.frontends():
        print(f"       {fe.app}: {' '.join(edge.urls(App(fe.app, edge.paths.home)))}")
    return 0


@command("edge:stop", "stop the edge's proxies", app=False)
@argument(*USER_OPTION[0], **USER_OPTION[1])
def cmd_edge_stop(args: argparse.Namespace) -> int:
    user = edge_user(args)
    handed_over(user)
    edge_of(user).stop(daemons.Owner.of(user))
    print("-----> The edge is stopped: apps behind it are not reachable until edge:start")
    return 0


@command("edge:set", "http-port, https-port, acme-email, acme-ca, acme-ca-root, tls", app=False)
@argument("assignments", nargs="+", metavar="KEY=VALUE")
@argument(*USER_OPTION[0], **USER_OPTION[1])
def cmd_edge_set(args: argparse.Namespace) -> int:
    user = edge_user(args)
    edge = edge_of(user)
    with account.acting_as(user):
        settings = write_settings(edge.paths, args.assignments)
        edge.apply()
    for key, value in settings.as_dict().items():
        print(f"       {key} = {value}")
    return 0


@command("domains", "the app's domains and their certificates", json=True)
def cmd_domains(args: argparse.Namespace) -> int:
    app = App.named(args.app).require()
    edge = Edge(app.home)
    rows = [{"name": name, "certificate": caddy.certificate(edge.paths, name)} for name in routes.load(app).domains]
    if args.json:
        return emit_json(rows)
    if not rows:
        print(f"{app.name} has no domains; add one with: domains:add {app.name} NAME")
    for row in rows:
        print(f"{row['name']:<40} certificate {row['certificate']}")
    return 0


@command("domains:add", "serve the app at these names, with HTTPS")
@argument("names", nargs="+", metavar="NAME")
def cmd_domains_add(args: argparse.Namespace) -> int:
    app = App.named(args.app).require()
    names = [routes.check_domain(name.lower().rstrip(".")) for name in args.names]
    edge = Edge(app.home)
    with edge.paths.locked():
        others = [other for other in apps.all_apps(app.home) if other.name != app.name]
        for name in names:
            taken = routes.owner(name, others)
            if taken:
                raise MiddockError(f"{name} is already a domain of {taken.name}: remove it there first")
        record = routes.load(app)
        record.domains += [name for name in names if name not in record.domains]
        routes.save(app, record)
        edge.apply()
    print(f"-----> {app.name} answers for {', '.join(record.domains)}")
    if not record.serving:
        print(f"       from its first deploy behind the edge (MIDDOCK_WEB in middock.env or config:set {app.name})")
    return 0


@command("domains:remove", "stop serving the app at these names")
@argument("names", nargs="+", metavar="NAME")
def cmd_domains_remove(args: argparse.Namespace) -> int:
    app = App.named(args.app).require()
    edge = Edge(app.home)
    with edge.paths.locked():
        record = routes.load(app)
        for name in args.names:
            if name.lower().rstrip(".") not in record.domains:
                raise MiddockError(f"{name} is not a domain of {app.name}")
        record.domains = [name for name in record.domains if name not in {n.lower().rstrip(".") for n in args.names}]
        routes.save(app, record)
        edge.apply()
    left = ", ".join(record.domains) or f"no domain (its own port: {' '.join(edge.urls(app)) or 'at its next deploy'})"
    print(f"-----> {app.name} answers for {left}")
    return 0
