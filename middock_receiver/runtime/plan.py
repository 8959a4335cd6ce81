"""What a deploy runs, as plain data: environments and argument lists, no side effects.

Kept apart from running so the plan can be read and tested without Docker (Kamal's split).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..state.config import reserved

COMPOSE_FILES = ("compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml")


@dataclass(frozen=True)
class Target:
    """The release being deployed."""

    app: str
    release: int
    commit: str
    ref: str


def deploy_env(
    target: Target, settings: Mapping[str, str], config: Mapping[str, str], base: Mapping[str, str]
) -> dict[str, str]:
    """The environment of every build script and compose command.

    `settings` are the repo's `middock.env` values, `config` the server-side config vars that
    override them, both without what is middock's own to set (`reserved`: PATH, DOCKER_*, …,
    which would change the programs middock runs); git's own variables of the hook are removed.
    """
    env = without_git(base)
    env.update({k: v for k, v in settings.items() if not reserved(k)})
    env.update({k: v for k, v in config.items() if not reserved(k)})
    env.update(
        MIDDOCK_APP=target.app,
        MIDDOCK_RELEASE=str(target.release),
        MIDDOCK_COMMIT=target.commit,
        MIDDOCK_REF=target.ref,
        IMAGE_TAG=target.commit[:12],
        COMPOSE_PROJECT_NAME=target.app,
    )
    return env


def without_git(env: Mapping[str, str]) -> dict[str, str]:
    """The environment without git's own variables (`GIT_DIR` and friends) of the hook."""
    return {k: v for k, v in env.items() if not k.startswith("GIT_")}


def build_scripts(checkout: Path, env: Mapping[str, str]) -> list[tuple[str, ...]]:
    """The build scripts to run, relative to the checkout, in `script_groups`:
    `MIDDOCK_BUILD_SCRIPTS` in its order, else every `docker/build*.sh` by name (the build stage
    refuses one without the exec bit)."""
    listed = env.get("MIDDOCK_BUILD_SCRIPTS")
    if listed is not None:
        return script_groups(listed.split())
    return script_groups(sorted(f"docker/{p.name}" for p in (checkout / "docker").glob("build*.sh") if not p.is_dir()))


LEADING_NUMBER = re.compile(r"(?:build)?[-_]?(\d+)")


def script_groups(scripts: Sequence[str]) -> list[tuple[str, ...]]:
    """The scripts in their order, in groups that run one after the other: neighbours whose
    file names start with the same number (`build-1-api.sh`, `build-1-web.sh`; after an optional
    `build`, `-` or `_`; `01` is `1`) form one group and run side by side; a script without a
    number is a group of its own."""
    groups: list[tuple[str, ...]] = []
    previous = None
    for script in scripts:
        found = LEADING_NUMBER.match(PurePosixPath(script).name)
        number = int(found[1]) if found else None
        if number is not None and number == previous:
            groups[-1] += (script,)
        else:
            groups.append((script,))
        previous = number
    return groups


def compose_files(checkout: Path, env: Mapping[str, str]) -> list[str]:
    """Compose's own lookup: `COMPOSE_FILE` (a `:`-separated list), else the first default name."""
    listed = env.get("COMPOSE_FILE")
    if listed:
        return [name for name in listed.split(os.pathsep) if name]
    return [name for name in COMPOSE_FILES if (checkout / name).is_file()][:1]


@dataclass(frozen=True)
class ComposeStack:
    """A compose project and the argument lists that act on it.

    `program` is `docker compose` or a standalone `docker-compose` v2. Another way of
    replacing the running stack (rolling, Swarm) would be another class with the same verbs.
    """

    program: tuple[str, ...]
    project: str
    files: tuple[str, ...]
    directory: Path

    def command(self, *args: str) -> list[str]:
        argv = [*self.program, "--project-name", self.project, "--project-directory", str(self.directory)]
        for name in self.files:
            argv += ["--file", name]
        return argv + list(args)

    def config(self) -> list[str]:
        return self.command("config", "--format", "json")

    def up(self, recreate: bool = False, services: Sequence[str] = ()) -> list[str]:
        """Bring the stack (or some of its services) to this configuration; `recreate` replaces
        even unchanged containers."""
        args = ["up", "--detach", "--remove-orphans", "--no-build", "--pull", "never"]
        return self.command(*args, *(["--force-recreate"] if recreate else []), *services)

    def stop(self, services: Sequence[str]) -> list[str]:
        return self.command("stop", *services)

    def down(self) -> list[str]:
        return self.command("down", "--remove-orphans")

    def run(
        self, service: str, command: list[str], name: str | None = None, labels: Mapping[str, str] | None = None
    ) -> list[str]:
        """A one-off container: no pty, stdin passed through; `name` lets a timeout remove it."""
        named = ["--name", name] if name else []
        labelled = [word for key, value in (labels or {}).items() for word in ("--label", f"{key}={value}")]
        return self.command("run", "--rm", "--no-deps", "-T", *named, *labelled, service, *command)


RELEASE_REPOSITORY = "middock-release"


def release_tag(app: str, release: int, service: str) -> str:
    """The tag that pins a service's image to a release, so rollback needs no rebuild."""
    return f"{RELEASE_REPOSITORY}:" + f"{app}.r{release}.{service}"[:128]


def release_tags_prefix(app: str) -> str:
    """What every release tag of the app begins with (an app's name is far shorter than a tag)."""
    return f"{RELEASE_REPOSITORY}:{app}.r"


# What a service may ask of the kernel's cgroups, in Compose's keys (and `deploy.resources`).
RESOURCE_KEYS = (
    "mem_limit", "memswap_limit", "mem_reservation", "cpus", "cpu_shares", "cpu_quota", "cpu_period", "cpuset",
    "pids_limit", "blkio_config",
)  # fmt: skip


def resource_limited(resolved: dict) -> list[str]:
    """The services of a resolved configuration that ask for CPU, memory, pids or I/O limits."""
    found = []
    for name, spec in resolved["services"].items():
        resources = (spec.get("deploy") or {}).get("resources") or {}
        if any(spec.get(key) for key in RESOURCE_KEYS) or resources.get("limits") or resources.get("reservations"):
            found.append(name)
    return sorted(found)
