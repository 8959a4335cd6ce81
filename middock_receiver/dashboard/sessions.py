"""Logging in to the dashboard without a password: one-time links, signed session cookies and
the CSRF token of a session.

`ssh deploy@SERVER dashboard` makes a link (`issue_link`): a random token, kept only as its
hash in `~/.middock/_dashboard/links/`, for LINK_SECONDS. Opening it (`redeem`) claims the file
by renaming it, so two requests with one token get one session between them. The session is a
cookie signed with the home's secret (HMAC-SHA256) naming the key and its expiry; nothing of it
is stored. `logout_all` replaces the secret, which ends every session and every CSRF token, and
drops the links not yet used.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from ..state.apps import write_atomic

LINK_SECONDS = 120
SESSION_SECONDS = 12 * 3600
LOCAL = ""  # the key of a session made on the server itself (`middock dashboard`, no SSH key)


def folder(home: Path) -> Path:
    return home / ".middock" / "_dashboard"


@dataclass(frozen=True)
class Session:
    """Who is logged in: the SSH key's name (LOCAL: the deploy user itself), until when."""

    key: str
    expires: float


def secret(home: Path) -> bytes:
    """The home's signing secret, made at first use (0600, the deploy user's)."""
    path = folder(home) / "secret"
    try:
        return bytes.fromhex(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return rotate_secret(home)


def rotate_secret(home: Path) -> bytes:
    value = secrets.token_bytes(32)
    folder(home).mkdir(mode=0o700, parents=True, exist_ok=True)
    write_atomic(folder(home) / "secret", value.hex() + "\n", mode=0o600)
    return value


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_link(home: Path, key: str, now: float | None = None) -> str:
    """A new one-time token for `key`, valid for LINK_SECONDS; returns the token."""
    token = secrets.token_urlsafe(32)
    links = folder(home) / "links"
    links.mkdir(mode=0o700, parents=True, exist_ok=True)
    expires = (now or time.time()) + LINK_SECONDS
    write_atomic(links / token_hash(token), json.dumps({"key": key, "expires": expires}), mode=0o600)
    drop_expired_links(home, now)
    return token


def drop_expired_links(home: Path, now: float | None = None) -> None:
    now = now or time.time()
    for path in (folder(home) / "links").glob("*"):
        try:
            if path.stat().st_mtime + 2 * LINK_SECONDS < now:
                path.unlink()
        except FileNotFoundError:
            continue


def redeem(home: Path, token: str, now: float | None = None) -> Session | None:
    """The session a link's token opens, once; None for a token unknown, used or expired."""
    if not token.isascii() or not 20 <= len(token) <= 100:
        return None
    path = folder(home) / "links" / token_hash(token)
    claimed = path.with_name(f"{path.name}.{os.getpid()}.{secrets.token_hex(4)}.used")
    try:
        os.rename(path, claimed)  # only one request gets it
    except FileNotFoundError:
        return None
    try:
        record = json.loads(claimed.read_text())
    finally:
        claimed.unlink()
    if not isinstance(record, dict) or not isinstance(record.get("key"), str):
        return None
    now = now or time.time()
    if not isinstance(record.get("expires"), (int, float)) or record["expires"] < now:
        return None
    return Session(record["key"], now + SESSION_SECONDS)


def sign(key: bytes, text: str) -> str:
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()


def cookie_value(home: Path, session: Session) -> str:
    # unpadded: a `=` would make the cookie a quoted string, which the browser keeps with its quotes
    body = base64.urlsafe_b64encode(json.dumps({"k": session.key, "e": session.expires}).encode()).decode().rstrip("=")
    return f"{body}.{sign(secret(home), body)}"


def session_of(home: Path, cookie: str | None, now: float | None = None) -> Session | None:
    """The session a cookie holds, if it is signed with the current secret and not expired."""
    if not cookie or cookie.count(".") != 1:
        return None
    body, signature = cookie.split(".")
    if not hmac.compare_digest(sign(secret(home), body), signature):
        return None
    try:
        data = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        found = Session(str(data["k"]), float(data["e"]))
    except (ValueError, KeyError, TypeError):
        return None
    return found if found.expires > (now or time.time()) else None


def csrf_token(home: Path, cookie: str) -> str:
    """The token a form of this session must send back: bound to the session's cookie."""
    return sign(secret(home), f"csrf:{cookie}")


def csrf_ok(home: Path, cookie: str | None, token: str | None) -> bool:
    return bool(cookie and token) and hmac.compare_digest(csrf_token(home, cookie or ""), token or "")


def logout_all(home: Path) -> None:
    """End every session and drop every unused link."""
    rotate_secret(home)
    for path in (folder(home) / "links").glob("*"):
        path.unlink(missing_ok=True)
