"""What a repository is made of, and how it deploys as it is (plain data, no Docker).

- A compose file: the stack it describes. Images come from the build scripts
  (`docker/build*.sh`) and, for services with `build:` whose image no script made, from Compose's
  own build (compose_build.py). A Dockerfile next to it counts only through a `build:`.
- No compose file but a Dockerfile (or `MIDDOCK_DOCKERFILE`): one service, `web`, built from the
  repository's root, served behind the edge on `MIDDOCK_WEB`, else the port its image EXPOSEs,
  else 5000, which it gets as `PORT` (as on Heroku). The compose file middock writes for it is
  shown in the deploy's output.
- A Dockerfile and a `Procfile`: every process type a service of that one image running its
  command (`web` behind the edge); `release:` is the release command.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .. import settings
from ..errors import MiddockError, quoted
from ..runtime.plan import compose_files
from ..state.config import reserved

DEFAULT_PORT = 5000
GENERATED = "compose.dockerfile.json"  # in the release's folder: the compose file of a Dockerfile repository
PROCFILE = "Procfile"
PROCESS_TYPE = re.compile(r"[a-z][a-z0-9_-]{0,62}\Z")
WEB = "web"
RELEASE = "release"  # a Procfile's release command: the release phase, not a service


@dataclass(frozen=True)
class DockerfileApp:
    """A repository deployed from its Dockerfile: which one, its port, its Procfile's processes."""

    dockerfile: str
    port: int
    processes: dict[str, str] = field(default_factory=dict)  # type -> command; empty: no Procfile

    @property
    def shape(self) -> str:
        return "Dockerfile + Procfile" if self.processes else "Dockerfile"


def dockerfile_of(checkout: Path, env: Mapping[str, str]) -> str | None:
    """The Dockerfile a repository without a compose file deploys from: MIDDOCK_DOCKERFILE, else
    `Dockerfile` at its root; None: neither."""
    given = settings.env_value(env, "MIDDOCK_DOCKERFILE")
    name = given or "Dockerfile"
    path = (checkout / name).resolve()
    if os.path.commonpath([str(path), str(checkout.resolve())]) != str(checkout.resolve()):
        raise MiddockError(f"MIDDOCK_DOCKERFILE {quoted(given)} is outside the repository")
    if path.is_file():
        return name
    if given:
        raise MiddockError(f"MIDDOCK_DOCKERFILE {quoted(given)} is not a file of the repository")
    return None


def exposed_port(dockerfile: str) -> int | None:
    """The first port the final stage of a Dockerfile EXPOSEs (None: it exposes none, or only a
    variable)."""
    stages = re.split(r"(?im)^\s*FROM\s", dockerfile)
    for line in stages[-1].splitlines():
        words = line.split()
        if words and words[0].upper() == "EXPOSE":
            for word in words[1:]:
                port = word.split("/")[0]
                if port.isdigit() and 0 < int(port) < 65536:
                    return int(port)
    return None


def parse_procfile(text: str) -> dict[str, str]:
    """A Procfile's `TYPE: COMMAND` lines (blank lines and `#` comments skipped), in order."""
    processes: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, sep, command = line.partition(":")
        name, command = name.strip(), command.strip()
        if not sep or not command:
            raise MiddockError(f"{PROCFILE} line {number}: expected `TYPE: COMMAND`, not {quoted(line)}")
        if not PROCESS_TYPE.match(name):
            raise MiddockError(
                f"{PROCFILE} line {number}: {quoted(name)} is not a process type "
                "(lowercase letters, digits, - and _, starting with a letter)"
            )
        if name in processes:
            raise MiddockError(f"{PROCFILE} line {number}: process type {name} is given twice")
        processes[name] = command
    if not [name for name in processes if name != RELEASE]:
        raise MiddockError(f"{PROCFILE} names no process to run (only a release command, or nothing)")
    return processes


def dockerfile_app(checkout: Path, env: Mapping[str, str]) -> DockerfileApp | None:
    """The Dockerfile a repository without a compose file deploys, with its port and Procfile;
    None: it has no Dockerfile either."""
    dockerfile = dockerfile_of(checkout, env)
    if dockerfile is None:
        return None
    web = settings.env_value(env, "MIDDOCK_WEB")  # (service, port)
    exposed = exposed_port((checkout / dockerfile).read_text(errors="replace"))
    port = web[1] if web else exposed or DEFAULT_PORT
    procfile = checkout / PROCFILE
    processes = parse_procfile(procfile.read_text(errors="replace")) if procfile.is_file() else {}
    return DockerfileApp(dockerfile, port, processes)


def shell(command: str) -> list[str]:
    """A Procfile command as Heroku runs it: by a shell, so `$PORT` and `&&` work."""
    return ["/bin/sh", "-c", command]


def container_names(defaults: Mapping[str, str], variables: Mapping[str, str]) -> list[str]:
    """The variables a Dockerfile app's containers get: middock.env's and the config vars, but
    middock's and Compose's own settings."""
    return sorted(
        key for key in {**defaults, **variables} if not key.startswith(("MIDDOCK_", "COMPOSE_")) and not reserved(key)
    )


def compose_config(app: DockerfileApp, project: str, config_names: list[str]) -> dict:
    """The compose file middock writes for a Dockerfile repository: the config vars by name only
    (Compose takes their values from the deploy's environment), PORT set."""
    environment = [*sorted(config_names), f"PORT={app.port}"]
    image = f"{project}-{WEB}"
    build = {"context": ".", "dockerfile": app.dockerfile}
    services = {}
    for name in services_of(app):
        service: dict = {"image": image, "environment": environment}
        if not services:  # the first builds the image, the others run it
            service["build"] = build
        if name in app.processes:  # `$$`: the shell expands it when it runs, not Compose now
            service["command"] = shell(app.processes[name].replace("$", "$$"))
            # Docker's init (tini) as PID 1 hands a stop's SIGTERM to the shell's whole group, so
            # the process it runs stops cleanly (as Heroku does), not after Docker's 10 s
            service["init"] = True
            service["environment"] = [*environment, "TINI_KILL_PROCESS_GROUP=1"]
        services[name] = service
    return {"services": services}


def services_of(app: DockerfileApp) -> list[str]:
    return [name for name in app.processes if name != RELEASE] or [WEB]


def implied_env(checkout: Path, env: Mapping[str, str]) -> dict[str, str]:
    """What a Dockerfile repository implies that the settings do not say: its web service behind
    the edge, its Procfile's release command (each only where not set)."""
    app = None if compose_files(checkout, env) else dockerfile_app(checkout, env)
    if app is None:
        return {}
    implied = {}
    services = services_of(app)
    if not env.get("MIDDOCK_WEB") and WEB in services:
        implied["MIDDOCK_WEB"] = f"{WEB}:{app.port}"
    if RELEASE in app.processes and not env.get("MIDDOCK_RELEASE_COMMAND"):
        runs_in = WEB if WEB in services else services[0]
        implied["MIDDOCK_RELEASE_COMMAND"] = shlex.join([runs_in, *shell(app.processes[RELEASE])])
    return implied


def compose_shape(scripts: bool, builds: bool, dockerfile: bool) -> str:
    """The line a push prints for a repository with a compose file: what makes its images, and
    the rule when a Dockerfile is there too."""
    found = [name for name, present in (("build scripts", scripts), ("compose build", builds)) if present]
    shape = " + ".join(found) or "images the compose file names"
    return shape + ("; the compose file decides: a Dockerfile counts only through build:" if dockerfile else "")


def rendered(config: dict) -> str:
    return json.dumps(config, indent=2) + "\n"
