"""A deploy, stage by stage: checkout, build, pin, the place prepared, release command, start,
gate and switch, record, prune.

Called with the app's deploy lock held. A release runs where its place is (places.py): beside
the live one behind the edge (switch.py) when the app names its web service or runs on the
Swarm, else it replaces the stack in place (in_place.py). Every failure leaves the previous
release serving: a failure before anything starts has touched nothing running, a failed gate
behind the edge removes only the new containers, and a failed gate in place brings the previous
release back (or stops the stack on a first deploy). What a crashed deploy left is settled
first (recovery.py).
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from .. import settings
from ..edge.control import Edge
from ..errors import FULL_DISK, MiddockError, os_error_line
from ..jobs import cronfile, crontab
from ..jobs.cronfile import Job
from ..output import Output
from ..runtime import compose, overrides, side_by_side, stack_file
from ..runtime.engine import docker, docker_client, enforces_limits
from ..runtime.plan import ComposeStack, Target, build_scripts, compose_files, deploy_env, resource_limited
from ..runtime.side_by_side import Web
from ..state import cluster, config, previews, processes, releases
from ..state.apps import App, read_settings
from ..state.lock import Request
from ..state.releases import Release
from . import build, compose_build, gate, publish, release_phase, removal, shapes, stacks, switch
from .in_place import InPlace
from .places import ComposePlace, KeptPlace, SwarmPlace
from .recovery import recover

if TYPE_CHECKING:
    from dulwich.repo import Repo


def describe(release: Release | None) -> str:
    if release is None:
        return "nothing is running"
    return f"release {release.number} ({release.commit[:7]}) is still serving"


def commit_details(repo: Repo, commit: str) -> tuple[str, str]:
    try:
        obj = repo[commit.encode()]
    except KeyError:
        raise MiddockError(f"commit {commit} is not in the repository") from None
    subject = obj.message.decode("utf-8", errors="replace").strip().splitlines()
    return (subject[0] if subject else ""), obj.author.decode("utf-8", errors="replace")


def write_env_file(path: Path, text: str) -> None:
    """Write config vars as dotenv, 0600 from the start (never readable by others)."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def repath(value: object, old: str, new: str) -> object:
    """Move every absolute path under `old` in a resolved compose configuration to `new`."""
    if isinstance(value, dict):
        return {k: repath(v, old, new) for k, v in value.items()}
    if isinstance(value, list):
        return [repath(v, old, new) for v in value]
    if isinstance(value, str) and (value == old or value.startswith(old + "/")):
        return new + value[len(old) :]
    return value


class Deploy:
    """One deploy (or rollback) of an app, holding everything its stages share."""

    def __init__(self, app: App, request: Request, out: Output) -> None:
        self.app = app
        self.request = request
        self.out = out
        self.settings = read_settings(app)
        self.client = docker_client()
        self.previous = releases.live(app)
        self.release: Release | None = None
        self.web: Web | None = None  # the web service behind the edge (MIDDOCK_WEB), else in place
        self.on_swarm = False  # the release runs as a stack on the Swarm (apps:set APP target swarm)
        self.place: ComposePlace | SwarmPlace | InPlace | None = None  # where the release runs
        self.beside: switch.Beside | None = None
        self.jobs: list[Job] = []  # the release's scheduled jobs (middock.cron)
        self.preview = previews.load(app)  # a preview app of a branch (previews/), else None

    @functools.cached_property
    def program(self) -> tuple[str, ...]:
        """Compose v2 (asked of `docker compose version` once; an instant rollback needs none)."""
        return compose.compose_program()

    @property
    def folder(self) -> Path:
        assert self.release is not None
        return releases.folder(self.app, self.release.number)

    @property
    def checkout_dir(self) -> Path:
        return self.folder / "checkout"

    def run(
        self, on_started: Callable[[Release], None] = lambda _: None, on_live: Callable[[], None] = lambda: None
    ) -> bool:
        """Deploy; returns True when the new release is live. Never raises for deploy failures.
        `on_live`: called once the new release serves, before the old one drains and stops (the
        follower, and so the pusher's command, ends there)."""
        recover(self.app, self.out)
        try:
            self.start()
            assert self.release is not None
            on_started(self.release)
            if self.request.restore is None:
                resolved = self.prepare_from_repo()
            else:
                resolved = self.prepare_from_release(self.request.restore)
            self.pin(resolved)
            self.prepare_place()
            self.release_phase()
            self.switch()
        except MiddockError as error:
            self.fail(str(error))
            return False
        except OSError as error:
            if error.errno in FULL_DISK:  # make room for the records that follow; leave nothing half-written
                self.discard_checkout()
            self.fail(os_error_line(error, self.app.state))
            return False
        self.succeed(on_live)
        return True

    def kind(self) -> str:
        """What this release is: a deploy, a rollback, or a restart or rescale of a release."""
        if self.request.restore is None:
            return "deploy"
        if self.request.reason == "rollback":
            return f"rollback to {self.request.restore}"
        return f"{self.request.reason} of release {self.request.restore}"

    def same_as(self) -> int | None:
        """For a restart or rescale: the release whose code and config it runs again."""
        if self.request.restore is None or self.request.reason == "rollback":
            return None
        origin = releases.load(self.app, self.request.restore)
        return (origin.same_as if origin else None) or self.request.restore

    def start(self) -> None:
        repo = gate.open_repo(self.app, self.request)
        subject, author = commit_details(repo, self.request.commit)
        kind = self.kind()
        self.release = releases.allocate(
            self.app,
            Release(
                number=0,
                commit=self.request.commit,
                ref=self.request.ref,
                subject=subject,
                author=author,
                pusher=self.request.pusher,
                kind=kind,
                pid=os.getpid(),
                same_as=self.same_as(),
            ),
        )
        self.out.add_file(self.folder / "log")
        action = {
            "deploy": "Deploying",
            f"rollback to {self.request.restore}": f"Rolling back to release {self.request.restore}:",
        }.get(kind, f"{kind[0].upper()}{kind[1:]}:")
        self.out.step(f"{action} {self.app.name} release {self.release.number}, {self.request.short} {subject}")

    def prepare_from_repo(self) -> dict:
        """Checkout, settings, env, compose config, build; returns the resolved configuration."""
        from .checkout import checkout  # dulwich's object layer: a rollback or restart never reads the repo

        assert self.release is not None
        repo = gate.open_repo(self.app, self.request)
        self.enter("checkout")
        self.out.step("Checking out")
        previous = None
        if self.previous and releases.folder(self.app, self.previous.number).joinpath("checkout").is_dir():
            previous = (self.previous.commit, releases.folder(self.app, self.previous.number) / "checkout")
        started = time.monotonic()
        summary = checkout(repo.object_store, self.request.commit, self.checkout_dir, previous)
        self.out.detail(f"{self.request.commit[:12]}: {summary} in {time.monotonic() - started:.2f}s")

        variables = config.read_vars(self.app)
        self.out.mask(list(variables.values()))
        target = Target(self.app.name, self.release.number, self.request.commit, self.request.ref)
        defaults = config.repo_defaults(self.checkout_dir)
        config.warn_reserved({"middock.env": defaults, "the config vars": variables}, self.out.warn)
        env = deploy_env(target, defaults, variables, os.environ)
        env.update(shapes.implied_env(self.checkout_dir, env))
        self.env = env
        write_env_file(self.folder / "env", config.render(variables))
        files = compose_files(self.checkout_dir, env)
        generated = not files  # a repository with a Dockerfile and no compose file
        if generated:
            files = [self.write_dockerfile_compose(env, shapes.container_names(defaults, variables))]
        for name in files:
            if not (self.checkout_dir / name).is_file():
                raise MiddockError(f"compose file {name} (from COMPOSE_FILE) is not in the repository")
        write_env_file((self.checkout_dir / files[0]).parent / ".env", config.render(variables, config.quote_compose))
        stack = ComposeStack(self.program, self.app.name, tuple(files), self.checkout_dir)
        resolved = compose.resolve(stack, env)
        self.choose_runtime(resolved)
        self.jobs = cronfile.read(self.checkout_dir, resolved["services"])
        if self.jobs and self.preview and settings.env_value(env, "MIDDOCK_PREVIEW_CRON") != "on":
            self.out.detail(f"{cronfile.FILE}: no jobs for a preview (unless MIDDOCK_PREVIEW_CRON=on)")
            self.jobs = []
        if self.jobs:
            settings.env_value(env, "MIDDOCK_CRON_TIMEOUT")  # a bad value fails the deploy, not a run
        cronfile.save(self.folder, self.jobs)
        compose_build.check_contexts(resolved, self.checkout_dir)
        compose_build.name_images(resolved, stack.project)
        scripts = build_scripts(self.checkout_dir, env)
        builds = bool(compose_build.planned(resolved, set()))
        if not generated:
            has_dockerfile = (self.checkout_dir / "Dockerfile").is_file()
            self.out.step(f"Repository shape: {shapes.compose_shape(bool(scripts), builds, has_dockerfile)}")
        refs = sorted({spec["image"] for spec in resolved["services"].values() if spec.get("image")})
        before = removal.image_ids(self.client, refs)

        self.enter("build")
        if not scripts and not builds:
            self.out.step("No build scripts (docker/build*.sh); using existing images")
        build.run_scripts(scripts, self.checkout_dir, env, self.out)
        made = {ref for ref, id_ in removal.image_ids(self.client, refs).items() if before.get(ref) != id_}
        if compose_build.build(stack, resolved, made, env, self.client, self.out):
            compose_build.prune_cache(env, self.out)

        after = removal.image_ids(self.client, refs)
        self.release.built = {ref: id_ for ref, id_ in after.items() if before.get(ref) != id_}
        return resolved

    def write_dockerfile_compose(self, env: dict[str, str], config_names: list[str]) -> str:
        """The compose file of a repository that has none but a Dockerfile, shown in the output."""
        found = shapes.dockerfile_app(self.checkout_dir, env)
        if found is None:
            raise MiddockError(
                "no compose file in the repository root (compose.yaml, compose.yml, docker-compose.yaml or "
                "docker-compose.yml) and no Dockerfile"
            )
        text = shapes.rendered(shapes.compose_config(found, self.app.name, config_names))
        path = self.folder / shapes.GENERATED
        path.write_text(text)
        self.out.step(f"Repository shape: {found.shape} (no compose file); middock's compose file for it:")
        for line in text.splitlines():
            self.out.detail(line)
        return str(path)

    def prepare_from_release(self, number: int) -> dict:
        """A rollback: the old release's checkout and pinned configuration, no build; returns that
        configuration."""
        old = releases.load(self.app, number)
        old_folder = releases.folder(self.app, number)
        if old is None or not old.good or not (old_folder / "compose.json").exists():
            raise MiddockError(f"release {number} cannot be rolled back to (only kept, successful releases can)")
        self.out.step(f"Restoring release {number} (no build)")
        subprocess.run(["cp", "-al", "--", str(old_folder / "checkout"), str(self.checkout_dir)], check=True)
        variables = config.read_file(old_folder / "env")
        if (old_folder / "env").exists():
            write_env_file(self.folder / "env", config.render(variables))
        resolved = repath(stacks.pinned_config(self.app, old), str(old_folder / "checkout"), str(self.checkout_dir))
        assert self.release is not None
        target = Target(self.app.name, self.release.number, self.request.commit, self.request.ref)
        self.env = deploy_env(target, config.repo_defaults(self.checkout_dir), variables, os.environ)
        self.env.update(shapes.implied_env(self.checkout_dir, self.env))
        self.choose_runtime(resolved)
        self.jobs = cronfile.load(old_folder)
        cronfile.save(self.folder, self.jobs)
        self.release.built = {}
        return resolved

    def choose_runtime(self, resolved: dict) -> None:
        """On the Swarm, behind the edge (MIDDOCK_WEB) or in place; refuse, before anything
        starts (the build too), a bad MIDDOCK_LOG_MAX, a stack that cannot run there or beside
        its predecessor, or a deploy the edge is not there to serve; say which resource limits
        the daemon will not enforce."""
        self.log_rotation = overrides.log_rotation(self.env.get("MIDDOCK_LOG_MAX"))
        limited = resource_limited(resolved)
        if limited and not enforces_limits(self.client):
            self.out.warn(
                f"the resource limits of {', '.join(limited)} are not enforced: rootless Docker has none on a "
                "kernel with cgroup v1 (see the README)"
            )
        self.web = side_by_side.web_target(self.env)
        self.on_swarm = self.settings.get("target") == "swarm"
        if self.on_swarm:
            cluster.require(self.app.home)
            stack_file.check(resolved, self.web, side_by_side.stop_first(self.env))
        elif self.web:
            side_by_side.check(resolved, self.web, side_by_side.stop_first(self.env))
        if self.web:
            side_by_side.health_path(self.env)
            Edge(self.app.home).require_running()
        elif self.preview:
            raise MiddockError(
                f"a preview runs behind the edge: branch {self.preview.branch} sets no MIDDOCK_WEB (middock.env)"
            )

    def pin(self, resolved: dict) -> None:
        """Pin every service to its image id, with the app's scale, restart policy and log rotation."""
        assert self.release is not None
        resolved = overrides.apply(resolved, processes.read_scale(self.app), self.web.service if self.web else None)
        resolved = overrides.with_log_rotation(resolved, self.log_rotation)
        self.resolved = resolved
        self.release.images = compose.pin_images(self.client, resolved, self.app.name, self.release.number)
        compose.write_config(resolved, self.folder / stacks.PINNED)

    def prepare_place(self) -> None:
        """Choose where the release runs and prepare it there, before its release command runs
        (its slot and ports, networks and volumes, the Swarm's registry), and record it."""
        assert self.release is not None
        self.place = self.choose_place()
        self.place.prepare(self.resolved, self.previous, self.web)
        releases.save(self.app, self.release)

    def choose_place(self) -> ComposePlace | SwarmPlace | InPlace:
        """On the Swarm, a stack of its own; behind the edge, a project of its own beside the live
        release (for a rollback to the containers the last switch kept: those, started again);
        else the app's own project, replaced in place."""
        assert self.release is not None
        common = (self.app, self.release, self.client, self.env, self.out)
        restore, reason = self.request.restore, self.request.reason
        if self.on_swarm:  # a rollback or restart reuses the images its release pushed
            return SwarmPlace(*common, source=releases.load(self.app, restore) if restore else None)
        if not self.web:
            return InPlace(*common, enter=self.enter, recreate=restore is not None and reason == "restart")
        if restore is not None and reason == "rollback":
            counts = {name: overrides.replicas(spec) for name, spec in self.resolved["services"].items()}
            found = stacks.revivable(self.client, self.app, restore, counts)
            if found:
                return KeptPlace(*common, kept=found[0], containers=found[1])
        return ComposePlace(*common)

    def release_phase(self) -> None:
        """A deploy runs its release command (a preview's first, its setup command before it); a
        rollback says it runs neither again."""
        assert self.release is not None
        if self.request.restore is not None:
            if self.request.reason == "rollback":
                release_phase.note_rollback(self.app, self.release, self.out)
            return
        stack = stacks.release_stack(self.app, self.program, self.release)
        self.enter("release")
        self.set_up_preview(stack)
        release_phase.run_release_command(stack, self.resolved["services"], self.env, self.out, self.client)
        if self.on_swarm:  # its one-off ran here, on the manager: its network must not shadow the stack's
            stacks.remove_project(self.client, stack.project)

    def set_up_preview(self, stack: ComposeStack) -> None:
        """A preview's first release runs MIDDOCK_PREVIEW_SETUP before its release command (its
        database made); once it succeeded, no later release runs it again."""
        if self.preview is None or self.preview.setup is not None:
            return
        assert self.release is not None
        services = self.resolved["services"]
        release_phase.run_release_command(stack, services, self.env, self.out, self.client, release_phase.PREVIEW_SETUP)
        self.preview.setup = self.release.number
        previews.save(self.app, self.preview)

    def enter(self, stage: str) -> None:
        """Record the stage reached, so a crash can be settled by the next deploy or `status`."""
        assert self.release is not None
        self.release.stage = stage
        releases.save(self.app, self.release)

    def switch(self) -> None:
        """Start the release where it runs, gate it on health and make it the one that serves. The
        containers kept from the last switch go first, unless this release is them, started again."""
        assert self.release is not None and self.place is not None
        if not isinstance(self.place, KeptPlace):
            stacks.discard_kept(self.client, self.app, self.out.warn)
        if isinstance(self.place, InPlace):
            self.place.run()
            return
        self.beside = switch.Beside(
            self.app, self.release, self.previous, self.env, self.resolved, self.web, self.out, self.client,
            self.enter, self.place,
        )  # fmt: skip
        self.beside.run()

    def discard_checkout(self) -> None:
        """Remove the failed release's checkout (a full disk cut it short: nothing can use it)."""
        if self.release is not None and releases.live_number(self.app) != self.release.number:
            shutil.rmtree(self.checkout_dir, ignore_errors=True)

    def fail(self, message: str) -> None:
        if self.release is None:
            self.out.error(message)
            return
        restored = self.place.restored if isinstance(self.place, InPlace) else None
        message = f"{message}; {restored or describe(self.previous)}"
        if self.release.project and releases.live_number(self.app) != self.release.number:
            try:  # what its release command (or a start cut short) left of its own project
                stacks.remove_project(self.client, self.release.project)
            except docker.errors.DockerException:
                pass
        try:
            releases.finish(self.app, self.release, releases.FAILED, message)
        except OSError:
            pass  # the record keeps saying "deploying"; the next deploy marks it interrupted
        self.out.error(f"Deploy failed: {message}")

    def succeed(self, on_live: Callable[[], None]) -> None:
        """Say the new release is live, then retire the old one behind it (drain, stop), then
        record the release and prune."""
        assert self.release is not None
        releases.set_live(self.app, self.release.number)
        processes.set_stopped(self.app, False)
        self.schedule_jobs()
        if self.request.restore is None:
            previous = self.previous.number if self.previous else None
            release_phase.post_deploy(self.checkout_dir, self.env, previous, self.out)
        duration = time.time() - self.release.started
        where = Edge(self.app.home).urls(self.app) if self.web else []
        at = f" at {', '.join(where)}" if where else ""
        self.out.step(f"Release {self.release.number} ({self.request.short}) is live{at}, deployed in {duration:.1f}s")
        releases.finish(self.app, self.release, releases.SUCCEEDED)  # live and good, whatever comes next
        on_live()
        if self.beside:
            try:
                self.beside.retire()
            except MiddockError as error:  # the new release serves: this is only tidying up
                self.out.warn(f"release {self.previous.number if self.previous else '?'} was not retired: {error}")
        self.enter(releases.RETIRED)
        self.prune()

    def schedule_jobs(self) -> None:
        """The live release's jobs take the app's place in the crontab (the release is live
        already: a crontab that cannot be written only warns)."""
        try:
            crontab.apply(self.app, self.jobs)
        except (MiddockError, OSError) as error:
            self.out.warn(f"the jobs of {cronfile.FILE} are not scheduled: {error}")
            return
        if self.jobs:
            self.out.detail(f"scheduled jobs: {', '.join(job.name for job in self.jobs)}")

    def prune(self) -> None:
        """Keep the last `keep` good releases rollback-able; remove older ones and their images."""
        assert self.release is not None
        kept, dropped = releases.retained(self.app, int(self.settings["keep"]), self.release.number)
        still_used = {(ref, id_) for r in kept for ref, id_ in r.built.items()}
        stopped = releases.kept(self.app)
        if stopped and stopped.release in {r.number for r in dropped}:
            stacks.discard_kept(self.client, self.app, self.out.warn)
        for old in dropped:
            removal.remove_images(self.client, self.app, old, still_used)
            releases.prune_files(self.app, old)
        deleted = publish.unpublish(self.app, dropped, kept)
        if deleted:
            self.out.detail(f"deleted {len(deleted)} image{'s' * (len(deleted) > 1)} from the registry")
        if dropped:
            self.out.detail(
                f"pruned release{'s' if len(dropped) > 1 else ''} {', '.join(str(r.number) for r in dropped)}"
            )
