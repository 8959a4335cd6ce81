"""Heroku-style deploy output: `-----> ` steps, 7-space detail, ` !     ` errors.

Output goes to files only (the deploy's stream file that the pusher follows, and the release
log), never straight to the pusher's connection, so a vanished pusher can never block or kill
a deploy. Config var values are masked before anything is written.
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

from .errors import one_line

MASK = "*****"
MIN_MASKED_LENGTH = 4


def open_appending(path: Path) -> BinaryIO:
    """Unbuffered, so a follower or a crash sees every line as soon as it is written."""
    return open(path, "ab", buffering=0)


class Output:
    def __init__(self, *sinks: BinaryIO) -> None:
        self.files: list[BinaryIO] = list(sinks)
        self.secrets: list[str] = []
        self.followed_to: int | None = None  # the pusher follows up to here (the release went live)

    @classmethod
    def to_file(cls, path: Path) -> Output:
        return cls(open_appending(path))

    def mask(self, values: list[str]) -> None:
        """Hide these values (and each of their lines) from everything written from now on."""
        for value in values:
            for piece in [value, *value.splitlines()]:
                if len(piece) >= MIN_MASKED_LENGTH and piece not in self.secrets:
                    self.secrets.append(piece)
        self.secrets.sort(key=len, reverse=True)

    def position(self) -> int:
        """How much has been written to the first file (the stream the pusher follows)."""
        return self.files[0].tell()

    def add_file(self, path: Path) -> None:
        self.files.append(open_appending(path))

    def masked(self, text: str) -> str:
        """The text with every value to hide replaced by the mask."""
        for secret in self.secrets:
            text = text.replace(secret, MASK)
        return text

    def write(self, text: str) -> None:
        data = self.masked(text).encode("utf-8", errors="replace")
        for f in self.files:
            f.write(data)
            f.flush()

    def step(self, message: str) -> None:
        self.write(f"-----> {message}\n")

    def detail(self, message: str) -> None:
        for line in message.splitlines() or [""]:
            self.write(f"       {line}\n")

    def warn(self, message: str) -> None:
        self.write(f" !     Warning: {one_line(message)}\n")

    def error(self, message: str) -> None:
        self.write(f" !     {one_line(message)}\n")

    def close(self) -> None:
        for f in self.files:
            f.close()
        self.files = []
