"""Settling what a crashed deploy left: its release recorded as interrupted and, if it had
started changing what runs, exactly the live release running again, with the edge pointing at
it (first of all, so a deploy killed just after its switch costs no request either)."""

from __future__ import annotations

import os
from collections.abc import Set as AbstractSet

from ..edge import routes
from ..edge.control import Edge
from ..errors import MiddockError
from ..jobs import cronfile, crontab
from ..output import Output
from ..runtime import compose
from ..runtime.engine import docker, docker_client
from ..runtime.plan import ComposeStack, without_git
from ..state import processes, releases
from ..state.apps import App
from ..state.releases import Release
from . import health, places, release_phase, stacks, switch

STAGES_TOUCHING_THE_STACK = ("release", "up", "health", "switch", "drain")


def recover(app: App, out: Output) -> None:
    """Settle what a crashed deploy left (call holding the deploy lock): its release is recorded
    as interrupted and, if it had started changing what runs, exactly the live release is made to
    run again, so what runs is what `status` calls live."""
    touched = False
    for release in releases.mark_interrupted(app):
        out.step(f"Release {release.number} was interrupted during {release.stage or 'its start'}")
        if release.stage == "release" and release_phase.remove_container(docker_client(), app.name, release.number):
            out.detail("stopped its release command, which was still running")
        touched = touched or release.stage in STAGES_TOUCHING_THE_STACK
    live = releases.live(app)
    if live and releases.still_draining(live):
        out.step(f"Release {live.number} is live; what it replaced was interrupted while it drained: removing it")
        touched = True
    if touched:
        restore_live(app, out)
        if live and live.result == releases.SUCCEEDED:
            live.stage = releases.RETIRED
            releases.save(app, live)
        try:  # the live release's jobs, if the crash came between its going live and their scheduling
            crontab.apply(app, cronfile.live(app)[1])
        except (MiddockError, OSError) as error:
            out.warn(f"the jobs of {cronfile.FILE} are not scheduled: {error}")


def restore_live(app: App, out: Output) -> None:
    """Remove every project of the app but the live release's (and the one kept stopped for an
    instant rollback, if it is still stopped), bring that one up, and point the edge at it."""
    client = docker_client()
    live = releases.live(app)
    keep = stacks.project(app, live) if live else None
    others = stacks.app_projects(client, app) - {keep}
    kept = releases.kept(app)
    if kept and kept.project in others:
        if any(c.status == "running" for c in health.project_containers(client, kept.project)):
            releases.set_kept(app, None)  # a rollback was starting them: they go with the rest
        else:
            others.discard(kept.project)
    if live and live.slot and not processes.is_stopped(app):
        hand_back_to_live(app, live, others, out)
    for name in sorted(others):
        stacks.remove_project(client, name)
        out.detail(f"removed the containers of {name}")
    if live is None:
        if routes.load(app).serving:
            Edge(app.home).switch(app, None)
        out.detail("no release is live")
        return
    if processes.is_stopped(app):
        out.detail(f"release {live.number} stays stopped (ps:stop); ps:start starts it")
        return
    stack = stacks.release_stack(app, compose.compose_program(), live)
    env = without_git(os.environ)
    place = places.place_of(app, live, client, {}, out)
    if isinstance(place, places.SwarmPlace):  # deploying the stack again changes nothing that runs as it should
        place.start([])
    elif live.slot:  # behind the edge: its web containers may be serving, never recreate them
        compose.run(stack.up(), env, stack.directory, out, "restoring the live release")
    else:
        try:
            # recreate: the killed deploy may have left a container half-stopped by the daemon
            compose.run(stack.up(recreate=True), env, stack.directory, out, "restoring the live release")
        except MiddockError:
            start_afresh(client, stack, env, out)
    if live.slot and routes.load(app).serving != live.slot:
        Edge(app.home).switch(app, live.slot)
    out.detail(f"restored release {live.number}")


def start_afresh(client: docker.DockerClient, stack: ComposeStack, env: dict[str, str], out: Output) -> None:
    """Remove the stack's containers and bring it up anew. A killed `docker compose up` can leave
    a container renamed halfway through its recreation, and the daemon still finishing the one
    request it was sent: a name that raced in is removed on the second try."""
    for last_try in (False, True):
        out.detail("removing the stack's containers and starting the live release afresh")
        stacks.remove_project(client, stack.project, keep_networks=True)
        try:
            compose.run(stack.up(), env, stack.directory, out, "restoring the live release")
            return
        except MiddockError:
            if last_try:
                raise


def hand_back_to_live(app: App, live: Release, others: AbstractSet[str], out: Output) -> None:
    """Before the other projects go: a deploy killed just after its switch left the edge on a
    release that never became live, so new requests go back to the live one (whose containers
    still run: only a drain is followed by their removal), and every other slot finishes the
    requests it is serving, as a deploy's drain would."""
    edge = Edge(app.home)
    if not edge.running():
        return
    if routes.load(app).serving not in (None, live.slot):
        edge.switch(app, live.slot)
        out.detail(f"the edge sends requests to release {live.number} again")
    env = stacks.release_env(app, live)
    slots = {r.slot for r in releases.history(app) if r.slot and r.project in others} - {live.slot}
    for slot in sorted(slots):
        switch.drain(edge, app, slot, env, out, f"the {slot} slot")
