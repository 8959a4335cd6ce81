"""The command registry: each command's words, options and function, and the parser made of them."""

from __future__ import annotations

import argparse
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
