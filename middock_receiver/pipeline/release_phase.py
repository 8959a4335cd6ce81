"""The release phase and the post-deploy script: the two places a deploy runs the app's own
commands outside its build (a preview's setup and teardown commands are run the release
command's way).

The release command (`python manage.py migrate`) runs once in a one-off container of the new
images, after they are pinned and before anything running is replaced, so a schema change is
in place when the new code starts and a failed one leaves the old release serving. The
post-deploy script runs on the host once the new release is live (notify, warm caches); it can
only warn, since the release is already serving.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path

from .. import process, settings
from ..errors import MiddockError
from ..output import Output
from ..runtime.engine import docker
from ..runtime.plan import ComposeStack
from ..state.apps import App
from ..state.releases import Release
from . import build, stacks


@dataclass(frozen=True)
class OneOff:
    """A command of the app's run in a one-off container of a release: `VARIABLE="SERVICE CMD…"`."""

    variable: str
    what: str


RELEASE = OneOff("MIDDOCK_RELEASE_COMMAND", "release command")
PREVIEW_SETUP = OneOff("MIDDOCK_PREVIEW_SETUP", "preview setup command")  # a preview's first release
PREVIEW_TEARDOWN = OneOff("MIDDOCK_PREVIEW_TEARDOWN", "preview teardown command")  # before it is destroyed


def release_command(
    env: Mapping[str, str], services: Collection[str], one_off: OneOff = RELEASE
) -> tuple[str, list[str]] | None:
    """`MIDDOCK_RELEASE_COMMAND="SERVICE CMD…"` split as a shell would split it (no shell runs it).

    An empty CMD runs the service's own command (a dedicated `migrate` service).
    """
    words = settings.env_value(env, one_off.variable)
    if not words:
        return None
    service, *command = words
    if service not in services:
        raise MiddockError(
            f"{one_off.variable} runs in service {service!r}, which the compose file does not define "
            f"(services: {', '.join(services)})"
        )
    return service, command


def run_release_command(
    stack: ComposeStack,
    services: Collection[str],
    env: Mapping[str, str],
    out: Output,
    client: docker.DockerClient,
    one_off: OneOff = RELEASE,
) -> bool:
    """Run the release command (or another `one_off`) in a one-off container of the release's
    pinned images; returns whether there was one to run.

    Its output streams as detail lines; a non-zero exit or a timeout fails the deploy.
    """
    found = release_command(env, services, one_off)
    if found is None:
        return False
    service, command = found
    text = env[one_off.variable].strip()
    timeout = settings.env_value(env, "MIDDOCK_RELEASE_TIMEOUT")
    release = int(env["MIDDOCK_RELEASE"])
    app = env["MIDDOCK_APP"]  # not the project: a release beside the live one has its own
    argv = stack.run(service, command, name=container_name(app, release))
    out.step(f"Running {one_off.what}: {text}")
    result = process.stream(argv, out.detail, env=env, cwd=stack.directory, timeout=timeout)
    if result.timed_out:
        remove_container(client, app, release)
        raise MiddockError(
            f"{one_off.what} `{text}` did not finish within {timeout:g} seconds (MIDDOCK_RELEASE_TIMEOUT) "
            "and was stopped"
        )
    if result.returncode != 0:
        raise MiddockError(f"{one_off.what} `{text}` failed with exit code {result.returncode}")
    out.detail(f"{one_off.what} succeeded")
    return True


def container_name(app: str, release: int) -> str:
    """The one-off's container: one at a time per release, so recovery knows which to remove."""
    return f"{app}-release-{release}"


def remove_container(client: docker.DockerClient, app: str, release: int) -> bool:
    """Stop and remove a release's one-off container, if there is one (killing Compose, or the
    deploy process, leaves it running: a migration must not run on beside the next one)."""
    try:
        client.containers.get(container_name(app, release)).remove(force=True)
    except docker.errors.NotFound:
        return False
    return True


def note_rollback(app: App, release: Release, out: Output) -> None:
    """Say that a rollback skips the release command of the release it restores."""
    if stacks.release_env(app, release).get("MIDDOCK_RELEASE_COMMAND", "").strip():
        out.step("Not running the release command: a rollback does not run it again, nor undo its migrations")


def post_deploy(checkout: Path, env: Mapping[str, str], previous: int | None, out: Output) -> None:
    """Run `MIDDOCK_POST_DEPLOY` on the host, with the build scripts' environment plus
    `MIDDOCK_PREVIOUS_RELEASE`; a failure is a warning and the release stays live."""
    script = settings.env_value(env, "MIDDOCK_POST_DEPLOY")
    if not script:
        return
    script_env = {**env, "MIDDOCK_PREVIOUS_RELEASE": "" if previous is None else str(previous)}
    try:
        build.run_scripts([(script,)], checkout, script_env, out, what="post-deploy script")
    except MiddockError as error:
        out.warn(f"{error}; the release stays live")
    except OSError as error:
        out.warn(f"post-deploy script {script} could not be started ({error.strerror}); the release stays live")
