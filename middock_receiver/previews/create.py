"""Which branch pushes make a preview, and the preview they deploy: found, or made with the
parent's config (and the branch's `middock.preview.env`), settings and preview domain."""

from __future__ import annotations

import fnmatch
import json
import shutil
import time
from collections.abc import Collection
from pathlib import Path

from .. import flock, settings
from ..edge import routes
from ..errors import MiddockError
from ..output import Output
from ..pipeline import gate, stacks
from ..pipeline.refs import RefUpdate
from ..state import apps, config, previews, releases
from ..state.apps import App, write_atomic
from ..state.previews import Preview

ENV_FILE = "middock.preview.env"
NAME_VARIABLE = "${MIDDOCK_PREVIEW}"
COPIED_SETTINGS = ("keep", "target")  # the parent's; the rest are the preview's own


def branch_of(update: RefUpdate) -> str | None:
    return update.ref.removeprefix("refs/heads/") if update.ref.startswith("refs/heads/") else None


def parent_env(parent: App) -> dict[str, str]:
    """The parent's settings: its live release's middock.env under its config vars."""
    live = releases.live(parent)
    return stacks.release_env(parent, live) if live else config.read_vars(parent)


def preview_patterns(parent: App, update: RefUpdate) -> list[str] | None:
    """For a push of a branch that may get a preview (previews on, not the deploy branch): the
    globs of MIDDOCK_PREVIEW_BRANCHES (default `*`) it must match; None for any other update."""
    branch = branch_of(update)
    chosen = apps.read_settings(parent)
    if branch is None or branch == chosen["branch"] or update.deleted or chosen["previews"] != "on":
        return None
    return list(settings.env_value(parent_env(parent), "MIDDOCK_PREVIEW_BRANCHES")) or ["*"]  # blank: as unset


def matches(branch: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatchcase(branch, pattern) for pattern in patterns)


def previewed_branch(parent: App, update: RefUpdate) -> str | None:
    """The branch whose preview the update deploys, else None."""
    branch, patterns = branch_of(update), preview_patterns(parent, update)
    return branch if branch and patterns is not None and matches(branch, patterns) else None


def check_room(parent: App, updates: list[RefUpdate], leaving: Collection[App] = ()) -> None:
    """Refuse a push (in pre-receive, before git takes any ref) whose branches would make more
    previews than preview-max, so that the same push works once there is room. `leaving`: the
    previews this push destroys first (past their preview-ttl)."""
    wanted = [branch for update in updates if (branch := previewed_branch(parent, update))]
    if not wanted:
        return
    existing = {preview.branch for app, preview in previews.of_parent(parent).items() if app not in leaving}
    new = [branch for branch in dict.fromkeys(wanted) if branch not in existing]
    limit = apps.read_settings(parent)["preview-max"]
    if len(existing) + len(new) > limit:
        raise limit_reached(parent, new[max(limit - len(existing), 0)], limit, "the push is refused: push again")


def limit_reached(parent: App, branch: str, limit: int, then: str) -> MiddockError:
    """The one line for a preview past preview-max: `then` says what to do once there is room."""
    return MiddockError(
        f"no preview of {branch}: {parent.name} has its preview-max of {limit} previews; {then} once you have "
        f"destroyed one (previews:destroy {parent.name} BRANCH) "
        f"or raised it (apps:set {parent.name} preview-max {limit + 1})"
    )


def lock_path(parent: App) -> Path:
    return parent.state / "previews.lock"


def open_preview(parent: App, update: RefUpdate, out: Output) -> tuple[App, bool]:
    """The preview the branch push deploys, and whether this push made it. Refused, before
    anything is made: a parent not behind the edge, or one more preview than preview-max."""
    branch = branch_of(update)
    assert branch is not None
    if not routes.load(parent).serving:
        raise MiddockError(
            f"no preview of {branch}: previews need {parent.name} to run behind the edge "
            f"(MIDDOCK_WEB in middock.env or config:set {parent.name})"
        )
    with flock.held(lock_path(parent)):
        existing = previews.of_parent(parent)
        for app, preview in existing.items():
            if preview.branch == branch:
                preview.pushed = time.time()
                previews.save(app, preview)
                return app, False
        limit = apps.read_settings(parent)["preview-max"]
        if len(existing) >= limit:  # another push made one since this push's pre-receive counted
            raise limit_reached(parent, branch, limit, "push a new commit of the branch")
        taken = {app.name: preview.branch for app, preview in existing.items()}
        preview = App(previews.name_for(parent.name, branch, taken), parent.home)
        claim(preview, branch)
        try:
            make(parent, preview, branch, update.new)
        except BaseException:
            shutil.rmtree(preview.state, ignore_errors=True)  # claim made it: nothing else is lost
            raise
    out.step(f"Creating preview {preview.name} of branch {branch}")
    return preview, True


def claim(preview: App, branch: str) -> None:
    """Make the preview's state folder; one already there (a preview that lost its record) is
    neither taken over nor removed."""
    try:
        preview.state.mkdir()
    except FileExistsError:
        raise MiddockError(
            f"no preview of {branch}: {preview.state} is already there, with no preview record (a preview "
            f"that lost its {apps.PREVIEW_RECORD}: put it back, or remove the folder once nothing of it runs)"
        ) from None


def make(parent: App, preview: App, branch: str, commit: str) -> None:
    """In the preview's new state folder: its record, settings, config and, under the parent's
    preview-domain, its own domain."""
    values = {**config.read_vars(parent), **preview_env(parent, commit, preview.name)}
    domain = None
    parent_settings = apps.read_settings(parent)
    if parent_settings["preview-domain"]:
        domain = f"{previews.domain_label(parent.name, preview.name)}.{parent_settings['preview-domain']}"
        owner = routes.owner(domain, apps.all_apps(parent.home))
        if owner is not None:
            raise MiddockError(f"no preview of {branch}: its domain {domain} is a domain of {owner.name}")
    preview.releases_dir.mkdir()
    previews.save(preview, Preview(parent.name, branch))
    chosen = {**apps.DEFAULT_SETTINGS, **{key: parent_settings[key] for key in COPIED_SETTINGS}, "branch": branch}
    write_atomic(preview.settings_file, json.dumps(chosen, indent=2) + "\n")
    config.write_vars(preview, values)
    if domain:
        routes.save(preview, routes.AppEdge(domains=[domain]))


def preview_env(parent: App, commit: str, name: str) -> dict[str, str]:
    """The branch's middock.preview.env, `${MIDDOCK_PREVIEW}` made the preview's name."""
    from ..pipeline.checkout import file_at  # dulwich's trees: only once a branch is pushed

    text = file_at(gate.pushed_repo(parent).object_store, commit, ENV_FILE)
    if text is None:
        return {}
    values = config.parse(text, ENV_FILE)
    for key in values:
        try:
            config.check_key(key)
        except MiddockError as error:
            raise MiddockError(f"{ENV_FILE}: {error}") from None
    return {key: value.replace(NAME_VARIABLE, name) for key, value in values.items()}
