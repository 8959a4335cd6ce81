"""The deploy user's SSH keys: each one named, each restricted to middock's forced command.

`~/.ssh/authorized_keys` is the only record. A line middock writes reads

    command="/opt/middock/bin/python3 -I -m middock_receiver ssh-serve --key alice",no-pty,…
    ssh-ed25519 AAAA… alice@laptop      (all on one line)

so sshd hands every session of that key to the dispatcher (ssh.py) with the key's name, and
the name is recorded as the pusher. Lines middock did not write are kept as they are and
listed as unrestricted, so an admin sees them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import shlex
import struct
import sys
from dataclasses import dataclass, replace
from pathlib import Path

from ..errors import MiddockError
from ..state.apps import write_atomic

KEY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}\Z")
RESTRICTIONS = "no-pty,no-port-forwarding,no-agent-forwarding,no-X11-forwarding,no-user-rc"
KEY_TYPES = frozenset(
    {
        "ssh-ed25519",
        "ssh-rsa",
        "ssh-dss",
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521",
        "sk-ssh-ed25519@openssh.com",
        "sk-ecdsa-sha2-nistp256@openssh.com",
    }
)
COMMAND_OPTION = re.compile(r'(?:^|,)command="((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True)
class Key:
    """One authorized key; `name` is None for a line middock did not write (no forced command of
    ours). `restricted`: its line is exactly what middock writes for it (keys:list flags others)."""

    name: str | None
    type: str
    blob: str
    comment: str = ""
    restricted: bool = False

    @property
    def fingerprint(self) -> str:
        """As `ssh-keygen -l` prints it."""
        digest = hashlib.sha256(base64.b64decode(self.blob)).digest()
        return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "type": self.type,
            "fingerprint": self.fingerprint,
            "comment": self.comment,
            "restricted": self.restricted,
        }


@dataclass(frozen=True)
class Line:
    """A line of authorized_keys as read: its text, and the key on it (None: blank or comment)."""

    text: str
    key: Key | None


def check_name(name: str) -> str:
    if not KEY_NAME.match(name):
        raise MiddockError(
            f"invalid key name {name!r}: use letters, digits and . _ @ + -, starting with a letter or digit, "
            "at most 64 characters"
        )
    return name


def forced_command(name: str) -> str:
    """The command sshd runs for every session of key `name`: this installation's dispatcher."""
    command = shlex.join([sys.executable, "-I", "-m", "middock_receiver", "ssh-serve", "--key", check_name(name)])
    if '"' in command:
        raise MiddockError(f"middock's interpreter path {sys.executable!r} cannot be put in authorized_keys")
    return command


def split_options(line: str) -> tuple[str, str]:
    """An authorized_keys line as (options, 'TYPE BLOB [COMMENT]'); options may hold quoted spaces."""
    if line.split(None, 1)[0] in KEY_TYPES:
        return "", line
    quoted = False
    i = 0
    while i < len(line):
        char = line[i]
        if quoted and char == "\\":
            i += 2
            continue
        if char == '"':
            quoted = not quoted
        elif char in " \t" and not quoted:
            return line[:i], line[i:].strip()
        i += 1
    return line, ""


def key_name(options: str) -> str | None:
    """The NAME of `ssh-serve --key NAME` in a line's forced command, if it is middock's."""
    match = COMMAND_OPTION.search(options)
    if not match:
        return None
    try:
        words = shlex.split(match.group(1).replace('\\"', '"'))
    except ValueError:
        return None
    for i, word in enumerate(words[:-2]):
        if word == "ssh-serve" and words[i + 1] == "--key" and KEY_NAME.match(words[i + 2]):
            return words[i + 2]
    return None


def check_blob(key_type: str, blob: str) -> None:
    """The base64 key must decode to an SSH key of the type it claims (a typo or cut line fails here)."""
    try:
        data = base64.b64decode(blob, validate=True)
        (length,) = struct.unpack(">I", data[:4])
    except (binascii.Error, struct.error):
        raise MiddockError(f"the {key_type} key is damaged: its base64 part does not decode") from None
    if data[4 : 4 + length] != key_type.encode():
        raise MiddockError(f"the {key_type} key is damaged: its data is not a {key_type} key")


def parse_line(text: str) -> Line:
    stripped = text.strip()
    if not stripped or stripped.startswith("#"):
        return Line(text, None)
    options, rest = split_options(stripped)
    fields = rest.split(None, 2)
    if len(fields) < 2 or fields[0] not in KEY_TYPES:
        return Line(text, None)
    comment = fields[2] if len(fields) > 2 else ""
    key = Key(key_name(options), fields[0], fields[1], comment)
    return Line(text, replace(key, restricted=bool(key.name) and text == render(key)))


def parse_public_key(text: str, name: str) -> Key:
    """The one public key in `text` (a .pub file, or an authorized_keys line whose options are dropped)."""
    if "PRIVATE KEY" in text:
        raise MiddockError("that is a private key: give the public one (the .pub file)")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    if len(lines) != 1:
        raise MiddockError(f"expected exactly one public key line ('ssh-ed25519 AAAA… comment'), found {len(lines)}")
    _, rest = split_options(lines[0])
    fields = rest.split(None, 2)
    if len(fields) < 2 or fields[0] not in KEY_TYPES:
        raise MiddockError("not an SSH public key: expected a line like 'ssh-ed25519 AAAA… comment'")
    check_blob(fields[0], fields[1])
    return Key(check_name(name), fields[0], fields[1], fields[2] if len(fields) > 2 else "")


def render(key: Key) -> str:
    """The authorized_keys line of a named key: forced command and every restriction."""
    assert key.name is not None
    line = f'command="{forced_command(key.name)}",{RESTRICTIONS} {key.type} {key.blob}'
    return f"{line} {key.comment}" if key.comment else line


def read(path: Path) -> list[Line]:
    try:
        return [parse_line(text) for text in path.read_text().splitlines()]
    except FileNotFoundError:
        return []
    except UnicodeDecodeError:
        raise MiddockError(f"{path} is not UTF-8 text: fix it (middock keeps the lines it did not write)") from None


def write(path: Path, lines: list[Line]) -> None:
    """Write the file with every middock key re-rendered (so each points at this installation)."""
    path.parent.mkdir(mode=0o700, exist_ok=True)
    text = "".join((render(line.key) if line.key and line.key.name else line.text) + "\n" for line in lines)
    write_atomic(path, text, mode=0o600)


def listed(path: Path) -> list[Key]:
    return [line.key for line in read(path) if line.key]


def add(path: Path, key: Key) -> bool:
    """Authorize `key`; False when this very key is already there under this name (nothing to do)."""
    lines = read(path)
    for line in lines:
        if line.key is None:
            continue
        same_key = line.key.blob == key.blob
        if same_key and line.key.name == key.name:
            write(path, lines)
            return False
        if same_key:
            owner = f"as {line.key.name!r}" if line.key.name else "without middock's restrictions"
            raise MiddockError(f"this key is already authorized {owner}; remove that first")
        if line.key.name == key.name:
            raise MiddockError(f"a different key is named {key.name!r}; remove it first: keys:remove {key.name}")
    write(path, [*lines, Line("", key)])
    return True


def remove(path: Path, name: str) -> None:
    lines = read(path)
    kept = [line for line in lines if not (line.key and line.key.name == name)]
    if len(kept) == len(lines):
        raise MiddockError(f"no key is named {name!r}; see keys:list")
    write(path, kept)


def refresh(path: Path) -> None:
    """Re-point every middock key's forced command at this installation (after an upgrade or a move)."""
    if path.exists():
        write(path, read(path))
