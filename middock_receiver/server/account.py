"""The deploy user, as root manages it: which account, acting as it, and refreshing its files.

Root edits files in the deploy user's home (its authorized_keys, its apps' hooks) with the
user's own identity, so a symlink planted there can never make root write elsewhere, and
every file stays the user's.
"""

from __future__ import annotations

import os
import pwd
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import MiddockError
from ..state import apps
from . import keys

DEFAULT_USER = "deploy"


def deploy_user(name: str | None) -> pwd.struct_passwd:
    """Root manages `name` (default: deploy); any other user manages only itself."""
    if os.getuid() != 0:
        me = pwd.getpwuid(os.getuid())
        if name not in (None, me.pw_name):
            raise MiddockError(f"only root can manage the user {name!r}; run this with sudo")
        return me
    name = name or DEFAULT_USER
    try:
        return pwd.getpwnam(name)
    except KeyError:
        raise MiddockError(f"there is no user {name!r}: install.sh creates it (--user NAME), or give --user") from None


@contextmanager
def acting_as(user: pwd.struct_passwd) -> Iterator[None]:
    """Run the block with the user's effective ids when we are root; as we are otherwise."""
    if os.geteuid() != 0 or user.pw_uid == 0:
        yield
        return
    groups = os.getgroups()
    os.setgroups([])
    os.setegid(user.pw_gid)
    os.seteuid(user.pw_uid)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)
        os.setgroups(groups)


def authorized_keys(user: pwd.struct_passwd) -> Path:
    return Path(user.pw_dir) / ".ssh" / "authorized_keys"


def refresh(user: pwd.struct_passwd) -> list[str]:
    """Point every app's hook and every key's forced command at this installation (install.sh
    runs this after an upgrade); returns the apps refreshed."""
    with acting_as(user):
        found = apps.all_apps(Path(user.pw_dir))
        for app in found:
            mode = "pre-receive" if apps.read_settings(app)["gate"] == "on" else "post-receive"
            apps.install_hooks(app, sys.executable, mode)
        keys.refresh(authorized_keys(user))
    return [app.name for app in found]
