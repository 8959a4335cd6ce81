"""Previews at their limits, with real pushes: names an older middock gave (`shop-`), a branch
past preview-max refused before git takes it, a preview that lost its record, and deploy
branches git would refuse."""

from __future__ import annotations

import json
import uuid

from support.apps import write_busybox_app, write_web_app
from support.middock import Server, Workdir
from support.previews import containers_of, last_step
from support.web import http_get

from middock_receiver.server import account


def older_app(server: Server, name: str) -> str:
    """An app named as an older middock allowed (`shop-`): made under another name, then moved
    where that version put it (its hooks find the app by their repository's name)."""
    made = f"t-{uuid.uuid4().hex[:8]}"
    server.middock("apps:create", made)
    server.repo_path(made).rename(server.repo_path(name))
    (server.home / ".middock" / made).rename(server.home / ".middock" / name)
    server.apps.append(name)
    return name


def one_error(output: str) -> list[str]:
    """The ` !` lines of a command's or a push's output, with no traceback among them."""
    assert "Traceback" not in output, output
    return [line for line in output.splitlines() if " !     " in line]


def preview_names(server: Server, app: str) -> list[str]:
    return [row["name"] for row in json.loads(server.middock("previews", app, "--json").stdout)]


def test_an_older_apps_name_ending_in_a_dash_keeps_working_and_keeps_its_previews_its_own(
    server: Server, work: Workdir, docker_client
):
    """`apps:create shop-` is refused; a `shop-` an older middock made is listed, deploys, and its
    preview `shop---feature` is its own (not `shop`'s): counted under its preview-max, listed
    under it, and destroyed with it."""
    base = f"t-{uuid.uuid4().hex[:8]}"
    refused = server.middock("apps:create", f"{base}-", check=False)
    assert refused.returncode == 1 and len(refused.stderr.splitlines()) == 1, refused.stderr
    assert "cannot end with '-'" in refused.stderr, refused.stderr
    assert not server.repo_path(f"{base}-").exists() and not (server.home / ".middock" / f"{base}-").exists()

    old = older_app(server, f"{base}-")
    server.middock("apps:create", base)  # the app whose name cutting `shop---feature` would give
    server.apps.append(base)
    assert {old, base} <= {row["app"] for row in json.loads(server.middock("apps", "--json").stdout)}

    server.start_edge("tls=off")
    work.git("remote", "add", "production", str(server.repo_path(old)))
    write_web_app(work)
    work.commit("main")
    assert "is live" in last_step(work.push().stderr)
    server.middock("apps:set", old, "previews", "on")
    server.middock("apps:set", old, "preview-max", "1")

    work.git("checkout", "-q", "-b", "feature")
    work.commit("a feature")
    feature = work.push("feature")
    preview = f"{base}---feature"
    assert f"Creating preview {preview} of branch feature" in feature.stderr, feature.stderr
    assert "is live" in last_step(feature.stderr), feature.stderr
    assert preview_names(server, old) == [preview] and preview_names(server, base) == []
    assert json.loads(server.middock("status", preview, "--json").stdout)["preview_of"] == old
    assert http_get(server.app_port(preview)) == "v1\n"

    work.git("checkout", "-q", "-b", "other", "main")
    work.commit("another feature")
    over = work.push("other")
    assert over.returncode != 0 and "[remote rejected] other -> other (pre-receive hook declined)" in over.stderr
    refusal = one_error(over.stderr)
    assert len(refusal) == 1 and f"{old} has its preview-max of 1 previews" in refusal[0], over.stderr
    assert f"apps:set {old} preview-max 2" in refusal[0], refusal
    assert work.git("ls-remote", "production", "other").stdout == ""

    server.middock("apps:set", old, "preview-max", "2")
    again = work.push("other")  # the same push, once there is room
    assert again.returncode == 0 and f"Creating preview {base}---other" in again.stderr, again.stderr
    assert "is live" in last_step(again.stderr), again.stderr
    assert preview_names(server, old) == [preview, f"{base}---other"]

    for name in (old, preview):
        server.wait_idle(name)
    server.wait_idle(f"{base}---other")
    destroyed = server.middock("apps:destroy", old, "--force")
    assert f"Destroying the previews of {old}: {preview}, {base}---other" in destroyed.stdout, destroyed.stdout
    for name in (old, preview, f"{base}---other"):
        assert containers_of(docker_client, name) == [] and not (server.home / ".middock" / name).exists()
    assert not server.repo_path(old).exists()
    assert base in {row["app"] for row in json.loads(server.middock("apps", "--json").stdout)}


def test_a_preview_that_lost_its_record_is_never_removed_by_a_push_of_its_branch(
    server: Server, work: Workdir, app: str, docker_client
):
    """A push of a branch whose preview folder is there without its record (what a failed
    creation met before) says so in one line; the preview keeps its folder, releases and
    running containers, and deploys again once its record is back. A preview whose creation
    fails leaves nothing behind."""
    server.start_edge("tls=off")
    write_web_app(work)
    work.commit("main")
    assert "is live" in work.push().stderr
    server.middock("apps:set", app, "previews", "on")
    work.git("checkout", "-q", "-b", "feature")
    work.commit("a feature")
    assert "is live" in last_step(work.push("feature").stderr)
    preview = f"{app}--feature"
    folder = server.home / ".middock" / preview
    port = server.app_port(preview)
    running = containers_of(docker_client, preview)
    assert running and http_get(port) == "v1\n"

    server.wait_idle(preview)
    record = folder / "preview.json"
    kept = record.read_text()
    record.unlink()
    work.commit("more feature")
    lost = work.push("feature")
    errors = one_error(lost.stderr)
    assert len(errors) == 1 and f"{folder} is already there, with no preview record" in errors[0], lost.stderr
    assert (folder / "releases" / "1").is_dir() and containers_of(docker_client, preview) == running
    assert http_get(port) == "v1\n"

    record.write_text(kept)
    work.commit("more feature, again")
    back = work.push("feature")
    assert "is live" in last_step(back.stderr) and "Creating preview" not in back.stderr, back.stderr
    assert [r["number"] for r in server.releases(preview)] == [1, 2]

    work.git("checkout", "-q", "-b", "broken", "main")
    work.write("middock.preview.env", "not a line of dotenv\n")
    work.commit("a branch whose preview cannot be made")
    broken = work.push("broken")
    assert len(one_error(broken.stderr)) == 1 and "middock.preview.env" in broken.stderr, broken.stderr
    assert not (server.home / ".middock" / f"{app}--broken").exists()
    assert preview_names(server, app) == [preview] and http_get(port) == "v1\n"


def test_a_deploy_branch_git_would_refuse_is_one_line_when_set_and_when_planted(server: Server, work: Workdir, app):
    """`apps:set APP branch "x<newline>y"` is refused in one line and stores nothing; a
    settings.json with such a branch planted in it refuses the push in one line, no traceback."""
    settings = server.home / ".middock" / app / "settings.json"
    head = server.repo_path(app) / "HEAD"
    before = settings.read_bytes(), head.read_bytes()
    refused = server.middock("apps:set", app, "branch", "x\ny", check=False)
    assert refused.returncode == 1 and refused.stderr.startswith(" !     invalid branch name 'x\\ny': git refuses it")
    for bad in ("x\ny", "x\nrefs/heads/y", "a..b", "-x", "x.lock", "x" * 10_000):
        refused = server.middock("apps:set", app, "branch", bad, check=False)
        assert refused.returncode != 0 and len(refused.stderr.splitlines()) == 1, refused.stderr
        assert refused.stdout == "" and (settings.read_bytes(), head.read_bytes()) == before

    stored = json.loads(settings.read_text())
    settings.write_text(json.dumps({**stored, "branch": "x\nrefs/heads/y"}))
    write_busybox_app(work, 1)
    work.commit("v1")
    pushed = work.push()
    errors = one_error(pushed.stderr)
    assert pushed.returncode != 0 and len(errors) == 1, pushed.stderr
    assert f"{settings} is not a valid record: invalid branch name" in errors[0], errors
    assert work.git("ls-remote", "production", "main").stdout == ""
    settings.write_text(json.dumps(stored))


def test_refresh_gives_every_apps_repository_both_hooks(server: Server, app: str):
    """`middock refresh` (install.sh runs it on upgrade) gives a repository an older middock
    left with its post-receive hook only the pre-receive hook that checks pushes too."""
    hooks = server.repo_path(app) / "hooks"
    installed = {name: (hooks / name).read_text() for name in ("pre-receive", "post-receive")}
    (hooks / "pre-receive").unlink()
    assert account.refresh(server.home) == [app]
    assert {name: (hooks / name).read_text() for name in installed} == installed
    assert (hooks / "pre-receive").stat().st_mode & 0o777 == 0o755
