"""What a push asked for: the ref updates git hands to the hook, and which of them deploy."""

from __future__ import annotations

from dataclasses import dataclass

ZERO = "0" * 40


@dataclass(frozen=True)
class RefUpdate:
    old: str
    new: str
    ref: str

    @property
    def deleted(self) -> bool:
        return self.new == ZERO


def parse_updates(text: str) -> list[RefUpdate]:
    """Parse hook stdin: one `OLD NEW REF` line per updated ref."""
    updates = []
    for line in text.splitlines():
        parts = line.split(" ", 2)
        if len(parts) == 3:
            updates.append(RefUpdate(*parts))
    return updates


def verdict(update: RefUpdate, branch: str) -> str | None:
    """None when the update deploys; otherwise the line telling the pusher why not."""
    if update.ref.startswith("refs/tags/"):
        return f"tag {update.ref[len('refs/tags/') :]} accepted, not deployed"
    if update.ref != f"refs/heads/{branch}":
        name = update.ref.removeprefix("refs/heads/")
        return f"branch {name} accepted, not deployed (only {branch} deploys)"
    if update.deleted:
        return f"branch {branch} deleted: nothing deployed, nothing stopped"
    return None
