"""The edge (local only): its state, start and stop, its settings; and each app's domains."""

from __future__ import annotations

import argparse
import pwd
import sys
from dataclasses import asdict

from ..edge import caddy, routes
from ..edge.control import Edge
from ..edge.settings import parse_assignments, write_settings
from ..errors import MiddockError
from ..server import account, daemons, privileges
from ..settings import EDGE_SETTINGS
from ..state import apps, releases
from ..state.apps import App
from .commands import argument, command, emit_json


def edge_of(user: pwd.struct_passwd) -> Edge:
    return Edge(privileges.home_of(user))


@command("edge", "is the edge running; its ports, routes and certificates", app=False, json=True)
def cmd_edge(args: argparse.Namespace) -> int:
    edge = edge_of(privileges.target(args.user))
    settings = edge.settings
    data = {
        "running": {"haproxy": edge.running(), "caddy": edge.caddy.answers()},
        "settings": settings.as_dict(),
        "routes": [route_row(edge, App(fe.app, edge.paths.home)) for fe in edge.frontends()],
        "not_owned": account.not_owned(edge.paths.home),
    }
    if args.json:
        return emit_json(data)
    if data["not_owned"]:
        sys.stderr.write(f" !     Warning: {account.not_owned_warning(edge.paths.home, data['not_owned'])}\n")
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


@command("edge:start", "start the edge's proxies (systemd units where systemd runs)", app=False, privileges="own")
def cmd_edge_start(args: argparse.Namespace) -> int:
    user = privileges.target(args.user)
    owner = daemons.Owner.of(user)
    if privileges.dropping(user) and not daemons.uses_systemd(owner):
        privileges.rerun_as(user, bind_low_ports=True)  # the proxies run as the user, binding ports 80 and 443
    edge = edge_of(user)
    running = privileges.as_user(user, edge.prepare_start)
    edge.launch(owner)  # under systemd, root enables the units; else the user starts the programs
    summary = privileges.as_user(user, edge.finish_start, running, owner)
    print(f"-----> {summary[0]}")
    for line in summary[1:]:
        print(f"       {line}")
    return 0


@command("edge:stop", "stop the edge's proxies", app=False, privileges="own")
def cmd_edge_stop(args: argparse.Namespace) -> int:
    user = privileges.target(args.user)
    owner = daemons.Owner.of(user)
    if privileges.dropping(user) and not daemons.uses_systemd(owner):
        privileges.rerun_as(user)
    edge_of(user).stop(owner)
    print("-----> The edge is stopped: apps behind it are not reachable until edge:start")
    return 0


@command("edge:set", ", ".join(EDGE_SETTINGS), app=False, privileges="own")
@argument("assignments", nargs="+", metavar="KEY=VALUE")
def cmd_edge_set(args: argparse.Namespace) -> int:
    changes = parse_assignments(args.assignments)  # before anything is made (the edge's folder, its lock)
    user = privileges.target(args.user)
    if privileges.dropping(user) and not daemons.uses_systemd(daemons.Owner.of(user)):
        privileges.rerun_as(user, bind_low_ports=True)  # it may start Caddy again (new TLS settings)
    privileges.become(user)
    edge = edge_of(user)
    with edge.paths.locked():
        before = edge.settings
        settings = write_settings(edge.paths, changes)
        try:
            edge.apply()
        except MiddockError:  # a proxy refused them (a port in use, say): the edge stays as it was
            write_settings(edge.paths, asdict(before))
            edge.apply()
            raise
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
        added = [name for name in names if name not in record.domains]
        record.domains += added
        routes.save(app, record)
        edge.apply(app)
    print(f"-----> {app.name} answers for {', '.join(record.domains)}")
    if not record.serving:
        print(f"       from its first deploy behind the edge (MIDDOCK_WEB in middock.env or config:set {app.name})")
    edge.get_certificates(added, lambda line: print(f"       {line}"))
    return 0


@command("domains:remove", "stop serving the app at these names")
@argument("names", nargs="+", metavar="NAME")
def cmd_domains_remove(args: argparse.Namespace) -> int:
    app = App.named(args.app).require()
    removed = {routes.check_domain(name.lower().rstrip(".")) for name in args.names}  # before the edge's lock is made
    edge = Edge(app.home)
    with edge.paths.locked():
        record = routes.load(app)
        for name in sorted(removed):
            if name not in record.domains:
                raise MiddockError(f"{name} is not a domain of {app.name}")
        record.domains = [name for name in record.domains if name not in removed]
        routes.save(app, record)
        edge.apply(app)
        for name in removed:
            caddy.forget_certificate(edge.paths, name)
    left = ", ".join(record.domains) or f"no domain (its own port: {' '.join(edge.urls(app)) or 'at its next deploy'})"
    print(f"-----> {app.name} answers for {left}")
    return 0
