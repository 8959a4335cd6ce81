"""The deploy user's SSH keys: each one named, each restricted to middock's forced command.

The keys file is the only record: root's `/etc/middock/authorized_keys/USER` (ROOT_KEYS), or the
user's own `~/.ssh/authorized_keys` on an install of before (which one: account.py). A line
middock writes reads

    command="/opt/middock/bin/python3 -I -m middock_receiver ssh-serve --key alice",no-pty,…
    ssh-ed25519 AAAA… alice@laptop      (all on one line)

so sshd hands every session of that key to the dispatcher (ssh.py) with the key's name, and
the name is recorded as the pusher. A key of role read or deploy carries it there too
(`--key bob --role deploy --apps shop,blog`, roles.py); a line without `--role` (a key added
before roles) is admin. Lines middock did not write are kept as they are and listed as
unrestricted, so an admin sees them. In root's keys file a key may forward one port, from the
client's end only: `permitopen="127.0.0.1:PORT"`, the dashboard's (`ssh -L`); install.sh's sshd
setting for the user allows no other forwarding (AllowTcpForwarding local).
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

from ..errors import MiddockError, quoted
from ..state.apps import APP_NAME, write_atomic
from .roles import ADMIN, ROLES, Grant

ROOT_KEYS = Path("/etc/middock/authorized_keys")  # root's keys files, one a user (server/account.py)
KEY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}\Z")
RESTRICTIONS = "no-pty,no-port-forwarding,no-agent-forwarding,no-X11-forwarding,no-user-rc"
TUNNEL_RESTRICTIONS = "no-pty,no-agent-forwarding,no-X11-forwarding,no-user-rc"  # and permitopen: one port
TUNNEL_OPTION = re.compile(r'(?:^|,)permitopen="127\.0\.0\.1:([0-9]{1,5})"')
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
    role: str = ADMIN
    apps: tuple[str, ...] = ()

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
            "role": self.role,
            "apps": list(self.apps),
        }

    @property
    def grant(self) -> Grant:
        return Grant(self.name or "(no name)", self.role, self.apps)


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


def check_grant(role: str, apps: tuple[str, ...]) -> tuple[str, tuple[str, ...]]:
    """A role and its apps as keys:add and keys:set take them (an admin holds every app)."""
    if role not in ROLES:
        raise MiddockError(f"unknown role {quoted(role)}: use one of {', '.join(ROLES)}")
    if role == ADMIN and apps:
        raise MiddockError("an admin key holds every app: give --apps only with --role read or deploy")
    for app in apps:
        if not APP_NAME.match(app):
            raise MiddockError(f"invalid app name {quoted(app)} in --apps: give APP,APP")
    return role, tuple(dict.fromkeys(apps))


def parse_apps(text: str | None) -> tuple[str, ...]:
    """`--apps shop,blog` as a tuple; None (not given) is every app."""
    return tuple(text.split(",")) if text is not None else ()


def forced_command(key: Key) -> str:
    """The command sshd runs for every session of `key`: this installation's dispatcher, told
    the key's name, role and apps."""
    argv = [sys.executable, "-I", "-m", "middock_receiver", "ssh-serve", "--key", check_name(key.name or "")]
    argv += ["--role", key.role] + (["--apps", ",".join(key.apps)] if key.apps else [])
    command = shlex.join(argv)
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


def forced_grant(options: str) -> tuple[str, str, tuple[str, ...]] | None:
    """(name, role, apps) of `ssh-serve --key NAME [--role ROLE] [--apps APP,APP]` in a line's
    forced command, if it is middock's; a role or apps it cannot read make the line foreign."""
    match = COMMAND_OPTION.search(options)
    if not match:
        return None
    try:
        words = shlex.split(match.group(1).replace('\\"', '"'))
    except ValueError:
        return None
    for i, word in enumerate(words[:-2]):
        if word == "ssh-serve" and words[i + 1] == "--key" and KEY_NAME.match(words[i + 2]):
            given = dict(zip(words[i + 3 :: 2], words[i + 4 :: 2], strict=False))
            try:
                role, apps = check_grant(given.get("--role", ADMIN), parse_apps(given.get("--apps")))
            except MiddockError:
                return None
            return words[i + 2], role, apps
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
    name, role, apps = forced_grant(options) or (None, ADMIN, ())
    key = Key(name, fields[0], fields[1], comment, role=role, apps=apps)
    tunnel = TUNNEL_OPTION.search(options)
    rendered = render(key, int(tunnel.group(1)) if tunnel else None) if key.name else None
    return Line(text, replace(key, restricted=text == rendered))


def parse_public_key(text: str, name: str, role: str = ADMIN, apps: tuple[str, ...] = ()) -> Key:
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
    role, apps = check_grant(role, apps)
    return Key(check_name(name), fields[0], fields[1], fields[2] if len(fields) > 2 else "", role=role, apps=apps)


def render(key: Key, tunnel_port: int | None = None) -> str:
    """The authorized_keys line of a named key: forced command and every restriction; with
    `tunnel_port`, the one port it may forward to (the dashboard's)."""
    assert key.name is not None
    options = f'{TUNNEL_RESTRICTIONS},permitopen="127.0.0.1:{tunnel_port}"' if tunnel_port else RESTRICTIONS
    line = f'command="{forced_command(key)}",{options} {key.type} {key.blob}'
    return f"{line} {key.comment}" if key.comment else line


def read(path: Path) -> list[Line]:
    try:
        return [parse_line(text) for text in path.read_text().splitlines()]
    except FileNotFoundError:
        return []
    except UnicodeDecodeError:
        raise MiddockError(f"{path} is not UTF-8 text: fix it (middock keeps the lines it did not write)") from None


def write(path: Path, lines: list[Line], tunnel_port: int | None = None) -> None:
    """Write the file with every middock key re-rendered (so each points at this installation):
    0644 in ROOT_KEYS (sshd reads it as the user), else 0600, the user's own. Only root's file
    lets a key forward `tunnel_port`: the user's own has no sshd setting that bounds forwarding."""
    shared = path.parent == ROOT_KEYS
    path.parent.mkdir(mode=0o755 if shared else 0o700, exist_ok=True)
    port = tunnel_port if shared else None
    text = "".join((render(line.key, port) if line.key and line.key.name else line.text) + "\n" for line in lines)
    write_atomic(path, text, mode=0o644 if shared else 0o600)


def listed(path: Path) -> list[Key]:
    return [line.key for line in read(path) if line.key]


def add(path: Path, key: Key, tunnel_port: int | None = None) -> bool:
    """Authorize `key`; False when this very key is already there under this name (nothing to do)."""
    lines = read(path)
    for line in lines:
        if line.key is None:
            continue
        same_key = line.key.blob == key.blob
        if same_key and line.key.name == key.name:
            write(path, lines, tunnel_port)
            return False
        if same_key:
            owner = f"as {line.key.name!r}" if line.key.name else "without middock's restrictions"
            raise MiddockError(f"this key is already authorized {owner}; remove that first")
        if line.key.name == key.name:
            raise MiddockError(f"a different key is named {key.name!r}; remove it first: keys:remove {key.name}")
    write(path, [*lines, Line("", key)], tunnel_port)
    return True


def set_grant(path: Path, name: str, role: str, apps: tuple[str, ...], tunnel_port: int | None = None) -> Key:
    """Give the key named `name` this role and these apps (none: every app); returns it."""
    role, apps = check_grant(role, apps)
    lines = read(path)
    for i, line in enumerate(lines):
        if line.key and line.key.name == name:
            lines[i] = Line(line.text, replace(line.key, role=role, apps=apps))
            write(path, lines, tunnel_port)
            return lines[i].key  # type: ignore[return-value]
    raise MiddockError(f"no key is named {name!r}; see keys:list")


def remove(path: Path, name: str, tunnel_port: int | None = None) -> None:
    lines = read(path)
    kept = [line for line in lines if not (line.key and line.key.name == name)]
    if len(kept) == len(lines):
        raise MiddockError(f"no key is named {name!r}; see keys:list")
    write(path, kept, tunnel_port)


def refresh(path: Path, tunnel_port: int | None = None) -> None:
    """Re-point every middock key's forced command at this installation (after an upgrade or a
    move), and its tunnel at the dashboard's port."""
    if path.exists():
        write(path, read(path), tunnel_port)
