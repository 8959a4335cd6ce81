"""The command registry: each command's words, options and function, and the parser made of them."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ..errors import MiddockError, one_line, quoted
from .version import ShowVersion

Run = Callable[[argparse.Namespace], int]


@dataclass
class Command:
    name: str
    help: str
    run: Run
    app: bool = True  # the first argument is an app's name
    json: bool = False  # it prints a listing that --json makes machine-readable
    arguments: list[tuple[tuple, dict]] = field(default_factory=list)
    privileges: str = "user"  # as root: "user" runs as the deploy user, "own" drops by itself, "none" needs nobody


COMMANDS: dict[str, Command] = {}

# The module of this package that registers each command. A command imports only its own module
# (`load`): importing every one of them, and all they import, was most of a short command's time.
MODULES = {
    "apps": ("apps", "apps:create", "apps:destroy", "apps:set"),
    "dashboard": ("dashboard", "dashboard:serve", "dashboard:install", "dashboard:logout-all"),
    "cron": ("cron", "cron:run", "cron:runs", "cron:output", "cron:suspend", "cron:resume"),
    "edge": ("edge", "edge:start", "edge:stop", "edge:set", "domains", "domains:add", "domains:remove"),
    "help": ("help", "version"),
    "maintenance": ("maintenance", "maintenance:on", "maintenance:off"),
    "networks": ("networks",),
    "notify": ("notify", "notify:add", "notify:remove", "notify:test", "notify:rotate-secret"),
    "previews": ("previews", "previews:destroy", "previews:expire"),
    "releases": (
        "deploy", "rollback", "releases", "status", "releases:output", "config", "config:set", "config:unset",
        "lock", "unlock", "run",
    ),
    "running": ("ps", "logs", "ps:scale", "ps:restart", "ps:stop", "ps:start"),
    "server": ("keys:add", "keys:set", "keys:list", "keys:remove", "refresh", "ssh-serve", "audit"),
    "swarm": ("swarm:init", "nodes", "nodes:join-script", "nodes:drain", "nodes:activate", "nodes:remove"),
}  # fmt: skip
NAMES = frozenset(name for names in MODULES.values() for name in names)  # every command, none imported


def load(words: Sequence[str]) -> dict[str, Command]:
    """Register the command the words name (the first that is not an option); every command for
    no such word (argparse then lists them all); returns the registry."""
    word = next((word for word in words if not word.startswith("-")), None)
    wanted = [module for module, names in MODULES.items() if word in names] or list(MODULES)
    for module in wanted:
        importlib.import_module(f"{__package__}.{module}")
    return COMMANDS


def load_all() -> dict[str, Command]:
    """Every command registered (help's listing, the tests' tables)."""
    return load([])


def command(
    name: str, help: str, *, app: bool = True, json: bool = False, privileges: str = "user"
) -> Callable[[Run], Run]:
    """Register a command; `@argument` lines under it add its options. `privileges` says what
    it needs when root runs it (server/privileges.py)."""

    def register(fn: Run) -> Run:
        arguments = list(reversed(getattr(fn, "arguments", [])))
        COMMANDS[name] = Command(name, help, fn, app, json, arguments, privileges)
        return fn

    return register


def argument(*args: object, **kwargs: object) -> Callable[[Run], Run]:
    def add(fn: Run) -> Run:
        fn.arguments = [*getattr(fn, "arguments", []), (args, kwargs)]  # type: ignore[attr-defined]
        return fn

    return add


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line and exit 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f" !     {one_line(f'{self.prog}: {message}')}\n")
        sys.exit(2)


def text_words(words: Sequence[str]) -> list[str]:
    """The command's words, each UTF-8 text: bytes that are not (which Python keeps as surrogate
    escapes) are refused here, once for every command, before any name or value is used."""
    for word in words:
        try:
            word.encode()
        except UnicodeEncodeError:
            raise MiddockError(f"{quoted(word)} is not UTF-8 text: names and values given to middock must be") from None
    return list(words)


def parser() -> argparse.ArgumentParser:
    top = Parser(prog="middock", description="git push to deploy a docker compose stack")
    top.add_argument("--version", action=ShowVersion)
    sub = top.add_subparsers(dest="command", required=True, parser_class=Parser)
    for cmd in COMMANDS.values():
        p = sub.add_parser(cmd.name, help=cmd.help, description=cmd.help)
        if cmd.app:
            p.add_argument("app")
        for args, kwargs in cmd.arguments:
            p.add_argument(*args, **kwargs)
        if cmd.json:
            p.add_argument("--json", action="store_true", help="machine-readable output")
        if cmd.privileges != "none":
            p.add_argument("--user", help="as root: the deploy user to act as (default: deploy)")
    return top


def when(timestamp: float | None) -> str:
    return "-" if timestamp is None else time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(timestamp))


def emit_json(data: object) -> int:
    print(json.dumps(data, indent=2))
    return 0
