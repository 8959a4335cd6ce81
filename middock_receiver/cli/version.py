"""Which middock this is: `middock --version`, `middock version` and the last line of `status`
print the package's one version (over SSH: the server's)."""

from __future__ import annotations

import argparse

from .. import __version__


def version_line() -> str:
    return f"middock {__version__}"


class ShowVersion(argparse.Action):
    """`middock --version`: the version line, and exit 0."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help="print middock's version")

    def __call__(self, parser: argparse.ArgumentParser, *args: object) -> None:
        print(version_line())
        parser.exit()
