"""The Docker Engine of this server, as the SDK reaches it: one clear line when it is not there.

Every module reaches the SDK as `from ..runtime.engine import docker`, imported on first use
(importlib's LazyLoader): the SDK, with requests and urllib3, is most of what a middock process
would import, and many never talk to the daemon (`version`, `help`, an argument refused, a push's
hook waiting for its deploy).
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import sys
from types import ModuleType

from ..errors import MiddockError
from ..server import rootless


def imported_on_first_use(name: str) -> ModuleType:
    """The module `name`, loaded when one of its attributes is first read (Python's documented recipe)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec(name)
    loader = importlib.util.LazyLoader(spec.loader)
    spec.loader = loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    loader.exec_module(module)
    return module


docker = imported_on_first_use("docker")


def docker_client() -> docker.DockerClient:
    """A client for the local daemon; one clear error when it is not there (asking the daemon its
    API version, the client's first request, finds out)."""
    try:
        return docker.from_env(version="auto", timeout=120)
    except docker.errors.DockerException as error:
        raise unreachable(str(error).split(": ", 1)[-1][:200]) from None


def unreachable(reason: str) -> MiddockError:
    """The one line for a daemon that does not answer, saying whose daemon is missing."""
    me = pwd.getpwuid(os.geteuid())
    if me.pw_uid != 0 and not rootless.socket_path(me.pw_uid).exists() and not rootless.on_root_daemon(me.pw_name):
        reason += "; this user's own Docker daemon is not running: root starts it with `middock refresh --user NAME`"
    return MiddockError(f"the Docker daemon is not reachable ({reason}); nothing was changed")


def enforces_limits(client: docker.DockerClient) -> bool:
    """Whether the daemon enforces CPU and memory limits: Docker's rootless mode cannot on a
    kernel with cgroup v1 (it documents it), and discards them with a warning of its own."""
    info = client.info()
    return not ("name=rootless" in info.get("SecurityOptions", []) and info.get("CgroupVersion") == "1")
