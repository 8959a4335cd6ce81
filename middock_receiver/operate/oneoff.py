"""`run APP SERVICE CMD…`: a one-off container of the live release (`heroku run`, `dokku run`).

It runs the live release's pinned compose.json, so exactly the images and environment that
are serving, never a newer build. No pty is allocated (it must work through `ssh` with a
forced command): stdin, stdout and stderr are passed straight through, and the command's exit
code becomes ours. On the Swarm it is a one-off task (a Swarm job) of the live release's image,
environment and networks: its output and exit code come back, but a task has no stdin.
"""

from __future__ import annotations

import os
import sys

from .. import process
from ..errors import MiddockError
from ..pipeline import publish, stacks
from ..runtime import compose, swarm
from ..runtime.engine import docker_client
from ..runtime.plan import without_git
from ..state import releases
from ..state.apps import App


def run(app: App, service: str, command: list[str]) -> int:
    live = releases.live(app)
    if live is None:
        raise MiddockError(f"{app.name} has no live release to run a command in; deploy it first")
    stacks.check_service(app, live, service)
    if stacks.on_swarm(app, live):
        client = publish.with_pull_password(docker_client(), app)
        code, output = swarm.run_job(client, stacks.project(app, live), service, live.pushed[service], command)
        sys.stdout.buffer.write(output)
        return code
    stack = stacks.release_stack(app, compose.compose_program(), live)
    env = {**without_git(os.environ), "COMPOSE_PROJECT_NAME": app.name}
    return process.attached(stack.run(service, command), env, stack.directory)
