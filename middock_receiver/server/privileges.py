"""The one place root becomes the deploy user.

Root installs middock and runs the root-only commands (keys, refresh, the edge, the Swarm), but
every file they touch lives in the deploy user's home. Whatever root does there it does as that
user, in a process that has really become it: real, effective and saved uid and gid, and the
user's own groups, so neither the process nor any program it starts can take root back, every
file it writes is the user's, and a symlink planted in the home can only lead where the user
could go anyway. Its working folder is the home, so no program inherits root's private folder.

A command runs as one of three kinds (the `privileges` of its registration, cli/commands.py):
`user` (most): the whole command runs as the user, dropped before it starts; `own`: the command
keeps root for the few steps only root can take (systemd units, /etc/docker, reading a file the
admin named) and does the rest through `as_user`; `none`: it touches nobody's files (help).
"""

from __future__ import annotations

import json
import os
import pwd
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import MiddockError, os_error_line

DEFAULT_USER = "deploy"


def target(name: str | None) -> pwd.struct_passwd:
    """Whom a command acts as: for root, the user named (default: deploy), or the owner of
    `MIDDOCK_HOME` when that is set (a second home, a test); anyone else acts only as itself."""
    if os.geteuid() != 0:
        me = pwd.getpwuid(os.getuid())
        if name not in (None, me.pw_name):
            raise MiddockError(f"only root can act as the user {name!r}; run this with sudo")
        return me
    home = os.environ.get("MIDDOCK_HOME")
    if home and name is None:
        try:
            return pwd.getpwuid(os.stat(home).st_uid)
        except (OSError, KeyError) as error:
            raise MiddockError(f"MIDDOCK_HOME {home} has no owner middock can act as ({error})") from None
    name = name or DEFAULT_USER
    try:
        return pwd.getpwnam(name)
    except KeyError:
        raise MiddockError(f"there is no user {name!r}: install.sh creates it (--user NAME), or give --user") from None


def home_of(user: pwd.struct_passwd) -> Path:
    return Path(os.environ.get("MIDDOCK_HOME") or user.pw_dir)


def dropping(user: pwd.struct_passwd) -> bool:
    """Whether acting as `user` means leaving root."""
    return os.geteuid() == 0 and user.pw_uid != 0


def become(user: pwd.struct_passwd) -> None:
    """This process becomes `user` for good (a no-op unless root acts for another user). Where
    the working folder is one the process cannot enter, it moves to the home."""
    if dropping(user):
        os.setgroups(os.getgrouplist(user.pw_name, user.pw_gid))
        os.setresgid(user.pw_gid, user.pw_gid, user.pw_gid)
        os.setresuid(user.pw_uid, user.pw_uid, user.pw_uid)
        os.environ.update(HOME=user.pw_dir, USER=user.pw_name, LOGNAME=user.pw_name)
        os.chdir(home_of(user))
        return
    try:
        os.listdir(".")
    except OSError:
        os.chdir(home_of(user))


def as_user(user: pwd.struct_passwd, fn: Callable[..., Any], *args: Any) -> Any:
    """`fn(*args)` run as `user` (in a child that has become it, when root acts for another
    user); its result must be JSON. A MiddockError or OSError in it is raised here as one line."""
    if not dropping(user):
        return fn(*args)
    sys.stdout.flush()
    sys.stderr.flush()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        os.close(read)
        try:
            become(user)
            outcome = {"value": fn(*args)}
        except MiddockError as error:
            outcome = {"error": str(error)}
        except OSError as error:
            outcome = {"error": os_error_line(error)}
        except BaseException:  # a bug: its traceback, as the parent would have printed it
            outcome = {"crash": traceback.format_exc()}
        sys.stdout.flush()
        sys.stderr.flush()
        with os.fdopen(write, "w") as pipe:
            json.dump(outcome, pipe)
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        text = pipe.read()
    os.waitpid(pid, 0)
    outcome = json.loads(text) if text else {"crash": "the child acting as the user died"}
    if "crash" in outcome:
        raise RuntimeError(f"acting as {user.pw_name} failed:\n{outcome['crash']}")
    if "error" in outcome:
        raise MiddockError(outcome["error"])
    return outcome["value"]


def exec_as(user: pwd.struct_passwd, argv: list[str], bind_low_ports: bool = False) -> None:
    """Replace this process by `argv` run as `user` in its home (setpriv), keeping at most the
    right to bind ports below 1024 (the edge's proxies, started without systemd). Never returns."""
    ids = [f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--init-groups"]
    caps = ["--inh-caps=+net_bind_service", "--ambient-caps=+net_bind_service"] if bind_low_ports else []
    os.environ.update(HOME=user.pw_dir, USER=user.pw_name, LOGNAME=user.pw_name)
    os.chdir(home_of(user))
    sys.stdout.flush()
    os.execvp("setpriv", ["setpriv", *ids, *caps, "--", *argv])


def rerun_as(user: pwd.struct_passwd, bind_low_ports: bool = False) -> None:
    """This very middock command, run again as `user` (see exec_as). Never returns."""
    exec_as(user, [sys.executable, "-I", "-m", "middock_receiver", *sys.argv[1:]], bind_low_ports)
