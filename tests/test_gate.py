"""Gate mode end to end: the deploy runs in pre-receive, and a failed deploy rejects the push."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support.apps import BUILD_WEB, write_busybox_app
from support.middock import Workdir
from support.ports import free_port
from support.waiting import wait_for
from support.web import http_get

from middock_receiver.pipeline.gate import link_objects, process_identity

REJECTED = "! [remote rejected] main -> main (pre-receive hook declined)"


@pytest.fixture
def gate_app(server, work) -> str:
    name = server.create_app("g", "--gate")
    work.git("remote", "add", "production", str(server.repo_path(name)))
    return name


def head(server, app: str, branch: str = "main") -> str | None:
    """The commit the server's branch names, or None when it does not exist."""
    result = subprocess.run(
        ["git", "--git-dir", str(server.repo_path(app)), "rev-parse", "--verify", "-q", f"refs/heads/{branch}"],
        capture_output=True,
        text=True,
    )
    return result.stdout.strip() or None


def server_tree(server, app: str, commit: str) -> str:
    """Every file of `commit` as the server's repository has it (`git ls-tree -r`): mode, blob
    id and path, so a missing or different object shows."""
    command = ["git", "--git-dir", str(server.repo_path(app)), "ls-tree", "-r", commit]
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout


def has_object(server, app: str, sha: str) -> bool:
    command = ["git", "--git-dir", str(server.repo_path(app)), "cat-file", "-e", sha]
    return subprocess.run(command, capture_output=True).returncode == 0


def error_lines(result: subprocess.CompletedProcess) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("remote:  !     ")]


def push_good(work, port: int, page: str) -> str:
    write_busybox_app(work, port, page)
    commit = work.commit(page)
    result = work.push()
    assert result.returncode == 0 and "is live" in result.stderr, result.stderr
    assert http_get(port) == page
    return commit


def slow_build(marker) -> str:
    """The web build script, touching `marker` and then pausing before it builds."""
    return BUILD_WEB.replace("set -e\n", f"set -e\ntouch {marker}\nsleep 2\n")


def wait_started(marker, push: subprocess.Popen) -> None:
    """Until the marker exists (the build script started), as long as the push still runs."""

    def started() -> bool:
        if marker.exists():
            return True
        assert push.poll() is None, push.communicate()
        return False

    wait_for(started, 120, "the build script to start", interval=0.1)


def wait_until_idle(server, app: str) -> list[dict]:
    """Wait until no deploy of the app runs (the worker has let go of the lock); its releases."""
    deadline = time.monotonic() + 300
    while True:
        row = next(r for r in json.loads(server.middock("apps", "--json").stdout) if r["app"] == app)
        history = server.releases(app)
        if row["state"] != "deploying" and history and history[-1]["result"] != "deploying":
            return history
        assert time.monotonic() < deadline, "the deploy never finished"
        time.sleep(0.5)


def test_good_push_is_accepted_and_live_and_status_shows_gate_mode(server, work, gate_app):
    port = free_port()
    write_busybox_app(work, port, "v1")
    commit = work.commit("v1")
    result = work.push()

    assert result.returncode == 0, result.stderr
    assert "* [new branch]      main -> main" in result.stderr
    assert "-----> Release 1" in result.stderr and "is live" in result.stderr
    assert http_get(port) == "v1"
    assert head(server, gate_app) == commit
    assert all((server.repo_path(gate_app) / "hooks" / hook).exists() for hook in ("pre-receive", "post-receive"))
    status = server.middock("status", gate_app).stdout
    assert "Mode:         gate: deploys before the branch moves; a failed deploy rejects the push" in status
    assert json.loads(server.middock("status", gate_app, "--json").stdout)["mode"] == "gate"
    row = next(r for r in json.loads(server.middock("apps", "--json").stdout) if r["app"] == gate_app)
    assert row["gate"] == "on"


def test_failed_build_or_health_gate_rejects_the_push_and_the_old_release_serves(server, work, gate_app):
    port = free_port()
    good = push_good(work, port, "v1")

    work.write("page.html", "v2")
    work.write("docker/build-web.sh", "#!/bin/sh\necho about to fail\nexit 3\n", executable=True)
    broken = work.commit("broken build")
    result = work.push()
    assert result.returncode != 0
    assert "about to fail" in result.stderr
    errors = error_lines(result)
    assert len(errors) == 1 and "docker/build-web.sh failed with exit code 3" in errors[0], result.stderr
    assert "release 1" in errors[0] and "still serving" in errors[0]
    assert REJECTED in result.stderr
    assert head(server, gate_app) == good
    assert not has_object(server, gate_app, broken)
    assert http_get(port) == "v1"

    write_busybox_app(work, port, "v3")
    compose = (work.path / "compose.yaml").read_text()
    # a healthcheck that never passes: a command that exits at once may still read "running" at the
    # gate's first look (a container with no healthcheck passes once it runs)
    unhealthy = 'command: ["sleep", "1000000"]\n    healthcheck: {test: ["CMD", "false"], interval: 1s}'
    work.write("compose.yaml", compose.replace('command: ["sleep", "1000000"]', unhealthy))
    work.write("middock.env", "MIDDOCK_HEALTH_TIMEOUT=2\n")
    work.commit("worker never healthy")
    result = work.push()
    assert result.returncode != 0 and REJECTED in result.stderr
    assert "rolled back to release 1" in error_lines(result)[-1], result.stderr
    assert head(server, gate_app) == good
    assert http_get(port) == "v1"
    assert [(r["number"], r["result"], r["live"]) for r in server.releases(gate_app)] == [
        (1, "succeeded", True),
        (2, "failed", False),
        (3, "failed", False),
    ]
    assert not list((server.home / ".middock" / gate_app / "queue").glob("*.objects"))


NEEDS_GREETING = BUILD_WEB.replace(
    "set -e\n", 'set -e\n[ -n "$GREETING" ] || { echo "GREETING is not set"; exit 4; }\necho "greeting: $GREETING"\n'
)


def test_the_same_commit_pushed_again_after_a_config_fix_deploys(server, work, gate_app):
    port = free_port()
    write_busybox_app(work, port, "v1")
    work.write("docker/build-web.sh", NEEDS_GREETING, executable=True)
    commit = work.commit("needs a greeting")
    first = work.push()
    assert first.returncode != 0 and REJECTED in first.stderr
    assert "GREETING is not set" in first.stderr
    assert head(server, gate_app) is None

    server.middock("config:set", gate_app, "GREETING=s3cret-hello", "--no-deploy")
    again = work.push()
    assert again.returncode == 0, again.stderr
    assert "greeting: *****" in again.stderr and "s3cret-hello" not in again.stderr
    assert head(server, gate_app) == commit
    assert http_get(port) == "v1"
    assert [(r["commit"], r["result"]) for r in server.releases(gate_app)] == [
        (commit, "failed"),
        (commit, "succeeded"),
    ]


def test_other_branches_and_tags_are_accepted_without_a_deploy(server, work, gate_app):
    write_busybox_app(work, free_port(), "feature")
    work.write("docker/build-web.sh", "#!/bin/sh\nexit 3\n", executable=True)
    commit = work.commit("feature work that does not build")
    work.git("tag", "v9")

    branch = work.push("HEAD:refs/heads/feature")
    tag = work.push("v9")
    for result in (branch, tag):
        assert result.returncode == 0, result.stderr
        assert "-----> Deploying" not in result.stderr
    assert "branch feature accepted, not deployed (only main deploys)" in branch.stderr
    assert "tag v9 accepted, not deployed" in tag.stderr
    assert head(server, gate_app, "feature") == commit
    assert server.releases(gate_app) == []


def test_a_vanished_pusher_leaves_the_branch_on_the_live_commit(server, work, gate_app, tmp_path):
    port = free_port()
    push_good(work, port, "v1")
    marker = tmp_path / "building"
    write_busybox_app(work, port, "v2")
    work.write("docker/build-web.sh", slow_build(marker), executable=True)
    commit = work.commit("v2, slow to build")

    push = work.start_push()
    wait_started(marker, push)
    os.killpg(push.pid, signal.SIGKILL)
    push.communicate()
    history = wait_until_idle(server, gate_app)

    assert (history[-1]["number"], history[-1]["result"], history[-1]["live"]) == (2, "succeeded", True)
    assert http_get(port) == "v2"
    assert head(server, gate_app) == commit
    fsck = ["git", "--git-dir", str(server.repo_path(gate_app)), "fsck", "--strict"]
    assert subprocess.run(fsck, capture_output=True).returncode == 0
    assert server_tree(server, gate_app, commit) == work.git("ls-tree", "-r", commit).stdout
    log = server.middock("releases:output", gate_app, "2").stdout
    assert "is live" in log and f"middock moved main to {commit[:7]}" in log


def test_a_push_queued_behind_one_that_moves_the_branch_is_rejected(server, work, gate_app, tmp_path):
    port = free_port()
    push_good(work, port, "v1")
    other = Workdir(tmp_path / "other")
    other.git("pull", "-q", str(server.repo_path(gate_app)), "main")
    other.git("remote", "add", "production", str(server.repo_path(gate_app)))
    marker = tmp_path / "building"
    write_busybox_app(work, port, "v2")
    work.write("docker/build-web.sh", slow_build(marker), executable=True)
    first = work.commit("v2, slow to build")
    other.write("page.html", "other")
    other.commit("other change")

    push = work.start_push()
    wait_started(marker, push)
    queued = other.push()
    first_output = push.communicate()[0]

    assert push.returncode == 0 and "is live" in first_output, first_output
    assert queued.returncode != 0 and REJECTED in queued.stderr
    assert "-----> Waiting for release 2" in queued.stderr
    assert f"main moved to {first[:7]} while this push waited: rejected, not deployed" in error_lines(queued)[0]
    assert head(server, gate_app) == first
    assert http_get(port) == "v2"


HELD_BUILD = BUILD_WEB.replace(
    "set -e\n", 'set -e\nif [ -n "$HOLD" ]; then touch "$HOLD.started"; while [ -e "$HOLD" ]; do sleep 0.1; done; fi\n'
)


def test_of_several_waiting_pushes_only_the_newest_deploys_the_others_are_rejected(server, work, gate_app, tmp_path):
    """A deploy without a push (`deploy APP`, which gates nothing) holds the lock while three
    pushes queue behind it, each from the branch as it is (v1). Then the newest deploys and moves
    the branch; the other two are rejected as superseded, and the branch never names them."""
    port = free_port()
    write_busybox_app(work, port, "v1")
    work.write("docker/build-web.sh", HELD_BUILD, executable=True)
    first = work.commit("v1")
    assert "is live" in work.push().stderr

    hold = tmp_path / "hold"
    hold.touch()
    holder = subprocess.Popen(
        [sys.executable, "-m", "middock_receiver", "deploy", gate_app],
        env={**server.env, "HOLD": str(hold)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    wait_started(hold.with_name("hold.started"), holder)
    pushes, commits = [], []
    for n in (2, 3, 4):
        work.write("page.html", f"v{n}")
        commits.append(work.commit(f"v{n}"))
        pushes.append(work.start_push())
        assert pushes[-1].stdout is not None
        waiting = pushes[-1].stdout.readline()  # it queued: the next one is newer
        assert "-----> Waiting for release 2" in waiting, waiting
    hold.unlink()
    assert "is live" in holder.communicate(timeout=120)[0]
    outputs = [push.communicate(timeout=120)[0] for push in pushes]

    newest = commits[-1][:7]
    for push, output in zip(pushes[:2], outputs[:2], strict=True):
        assert push.returncode != 0 and REJECTED in output, output
        errors = [line for line in output.splitlines() if line.startswith("remote:  !     ")]
        assert len(errors) == 1 and f"Superseded by {newest}: rejected, not deployed" in errors[0], output
        assert "-----> Deploying" not in output
    assert pushes[2].returncode == 0 and "is live" in outputs[2], outputs[2]
    assert head(server, gate_app) == commits[-1]
    assert http_get(port) == "v4"
    assert [(r["commit"], r["result"]) for r in server.releases(gate_app)] == [
        (first, "succeeded"),
        (first, "succeeded"),
        (commits[-1], "succeeded"),
    ]


def test_switching_modes_keeps_the_releases(server, work, app):
    port = free_port()
    push_good(work, port, "v1")
    hooks = server.repo_path(app) / "hooks"
    installed = {hook: (hooks / hook).read_text() for hook in ("pre-receive", "post-receive")}

    server.middock("apps:set", app, "gate", "on")  # both hooks stay: each reads the mode
    assert {hook: (hooks / hook).read_text() for hook in installed} == installed
    assert [(r["number"], r["live"]) for r in server.releases(app)] == [(1, True)]
    work.write("docker/build-web.sh", "#!/bin/sh\nexit 3\n", executable=True)
    work.commit("broken build")
    assert REJECTED in work.push().stderr
    second = push_good(work, port, "v2")
    assert head(server, app) == second

    server.middock("apps:set", app, "gate", "off")
    assert {hook: (hooks / hook).read_text() for hook in installed} == installed
    assert "Mode:         post-receive" in server.middock("status", app).stdout
    server.middock("rollback", app, "1")
    assert http_get(port) == "v1"
    assert [(r["number"], r["result"], r["live"]) for r in server.releases(app)] == [
        (1, "succeeded", False),
        (2, "failed", False),
        (3, "succeeded", False),
        (4, "succeeded", True),
    ]


def test_a_repository_whose_hooks_name_the_old_module_still_deploys(server, work, app):
    """Hooks an older middock wrote run `-m middock_receiver.hook`: until `refresh` rewrites
    them (install.sh runs it after the new package is in place), that name forwards to
    push/hook.py, so a push in between still deploys."""
    post_receive = server.repo_path(app) / "hooks" / "post-receive"
    assert "-m middock_receiver.push.hook post-receive" in post_receive.read_text()
    post_receive.write_text(post_receive.read_text().replace("middock_receiver.push.hook", "middock_receiver.hook"))
    port = free_port()
    push_good(work, port, "v1")
    assert [(r["number"], r["live"]) for r in server.releases(app)] == [(1, True)]


def test_link_objects_hard_links_and_skips_receive_packs_keep_locks(tmp_path):
    source, dest = tmp_path / "quarantine", tmp_path / "objects"
    (source / "ab").mkdir(parents=True)
    (source / "pack").mkdir()
    (source / "ab" / "cdef").write_bytes(b"loose")
    for name in ("pack-1.pack", "pack-1.idx", "pack-1.keep"):
        (source / "pack" / name).write_bytes(name.encode())
    (dest / "ab").mkdir(parents=True)
    (dest / "ab" / "cdef").write_bytes(b"already there")
    kept = (dest / "ab" / "cdef").stat().st_ino

    link_objects(source, dest)
    assert sorted(p.name for p in (dest / "pack").iterdir()) == ["pack-1.idx", "pack-1.pack"]
    for name in ("pack-1.pack", "pack-1.idx"):
        assert os.path.samefile(source / "pack" / name, dest / "pack" / name)
    # an object the repository has already is left as it is: neither replaced nor rewritten
    assert (dest / "ab" / "cdef").read_bytes() == b"already there"
    assert (dest / "ab" / "cdef").stat().st_ino == kept


def test_process_identity_tells_a_live_process_from_an_ended_one():
    me = process_identity(os.getpid())
    assert me is not None and me[0] == os.getpid() and process_identity(os.getpid()) == me
    child = subprocess.Popen(["true"])
    while Path(f"/proc/{child.pid}/stat").read_text().rsplit(") ", 1)[1][:1] != "Z":
        time.sleep(0.05)
    assert process_identity(child.pid) is None  # a zombie has ended
    child.wait()
    assert process_identity(child.pid) is None
