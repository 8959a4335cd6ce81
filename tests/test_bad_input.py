"""The bad-input matrix: each gives one clear line and loses nothing running."""

from __future__ import annotations

import re
import subprocess

import pytest
from support.apps import write_busybox_app
from support.ports import free_port
from support.web import http_get


@pytest.fixture
def live_app(server, work, app):
    """An app serving v1 on `live_app.port`."""
    port = free_port()
    write_busybox_app(work, port, "v1")
    work.commit("v1")
    assert "is live" in work.push().stderr
    return port


def error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if " !     " in line]


HOSTILE_BRANCHES = ["x;touch${IFS}pwned", "$(touch${IFS}pwned)", "`touch${IFS}pwned`|cat", "ünïcødé-→"]


def test_hostile_ref_names_reach_no_shell(server, work, app, live_app, tmp_path):
    for branch in HOSTILE_BRANCHES:
        result = work.push(f"HEAD:refs/heads/{branch}")
        assert result.returncode == 0, result.stderr
        assert f"branch {branch} accepted, not deployed" in result.stderr

    deploy_branch = HOSTILE_BRANCHES[1]
    server.middock("apps:set", app, "branch", deploy_branch)
    build_script = work.path.joinpath("docker/build-web.sh").read_text() + 'echo "ref=$MIDDOCK_REF"\n'
    work.write("docker/build-web.sh", build_script, executable=True)
    work.write("page.html", "from a hostile branch")
    work.commit("deploy from a strange branch name")
    result = work.push(f"HEAD:refs/heads/{deploy_branch}")
    assert f"ref=refs/heads/{deploy_branch}" in result.stderr, result.stderr
    assert http_get(live_app) == "from a hostile branch"
    assert not list(tmp_path.rglob("pwned")) and not list(server.home.rglob("pwned"))
    refused = server.middock("apps:set", app, "branch", "has space", check=False)
    assert refused.returncode != 0 and len(refused.stderr.splitlines()) == 1


def test_force_push_rewriting_history_deploys(server, work, app, live_app):
    work.write("page.html", "v2")
    work.commit("v2")
    work.push()
    work.git("reset", "--hard", "HEAD~1")
    work.write("page.html", "rewritten")
    work.commit("rewritten history")
    assert work.push().returncode != 0  # git refuses the non-fast-forward without --force
    result = work.push("--force", "main")
    assert "is live" in result.stderr, result.stderr
    assert http_get(live_app) == "rewritten"


def test_symlink_then_folder_never_writes_outside(server, work, app, live_app, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (work.path / "d").symlink_to(outside)
    work.commit("d is a symlink to a folder outside")
    assert "is live" in work.push().stderr
    (work.path / "d").unlink()
    work.write("d/planted.txt", "should stay inside the checkout")
    work.write("page.html", "after the folder")
    work.commit("d is now a folder")
    result = work.push()
    assert "is live" in result.stderr, result.stderr
    assert list(outside.iterdir()) == []
    assert http_get(live_app) == "after the folder"


def test_a_tree_with_both_a_symlink_and_a_folder_named_alike_is_refused(server, work, app, tmp_path):
    """A crafted tree (git mktree allows duplicate names) on a first checkout: nothing is written
    outside, and the checkout itself refuses it."""
    outside = tmp_path / "outside2"
    outside.mkdir()
    write_busybox_app(work, free_port())
    work.commit("base")
    blob = work.git("hash-object", "-w", "--stdin", check=True).stdout  # empty blob
    link = subprocess.run(
        ["git", "hash-object", "-w", "--stdin"], cwd=work.path, input=str(outside), capture_output=True, text=True
    ).stdout.strip()
    inner = subprocess.run(
        ["git", "mktree"], cwd=work.path, input=f"100644 blob {blob.strip()}\tplanted\n", capture_output=True, text=True
    ).stdout.strip()
    base_tree = work.git("ls-tree", "HEAD").stdout
    crafted = subprocess.run(
        ["git", "mktree"],
        cwd=work.path,
        input=base_tree + f"120000 blob {link}\td\n040000 tree {inner}\td\n",
        capture_output=True,
        text=True,
    ).stdout.strip()
    commit = work.git("commit-tree", crafted, "-m", "crafted").stdout.strip()
    result = work.push(f"{commit}:refs/heads/main")
    assert list(outside.iterdir()) == [], result.stderr
    # git let the tree in (git fsck would call it duplicateEntries), and the checkout refused it:
    # written as it comes, the symlink would lead `d/planted` outside; dropping either entry
    # silently would deploy a tree other than the one pushed.
    errors = error_lines(result.stderr)
    assert len(errors) == 1 and re.search(r"refusing .*\bd\b", errors[0]), result.stderr
    [release] = server.releases(app)
    assert (release["commit"], release["stage"], release["result"]) == (commit, "checkout", "failed")
    assert "-----> Running docker/build-web.sh" not in result.stderr


def test_huge_and_invalid_utf8_build_output(server, work, app, live_app):
    work.write(
        "docker/build-web.sh",
        work.path.joinpath("docker/build-web.sh")
        .read_text()
        .replace(
            "set -e\n",
            "set -e\nhead -c 50000000 /dev/zero | tr '\\0' 'x' | fold -w 1000\nprintf 'bad \\377\\376 bytes\\n'\n",
        ),
        executable=True,
    )
    work.write("page.html", "v2")
    work.commit("noisy build")
    result = work.push()
    assert "is live" in result.stderr
    assert "bad \ufffd\ufffd bytes" in result.stderr
    log = server.home / ".middock" / app / "releases" / "2" / "log"
    assert log.stat().st_size > 50_000_000
    assert http_get(live_app) == "v2"


def test_build_hanging_past_the_timeout_fails_cleanly(server, work, app, live_app):
    work.write("middock.env", "MIDDOCK_BUILD_TIMEOUT=2\n")
    work.write("docker/build-web.sh", "#!/bin/sh\necho hanging\nsleep 600 &\nsleep 600\n", executable=True)
    work.commit("hangs")
    result = work.push()
    errors = error_lines(result.stderr)
    assert len(errors) == 1 and "did not finish within 2 seconds (MIDDOCK_BUILD_TIMEOUT)" in errors[0]
    assert "release 1" in errors[0] and "still serving" in errors[0]
    assert http_get(live_app) == "v1"
    assert subprocess.run(["pgrep", "-f", "sleep 600"], capture_output=True).returncode != 0


def test_pushing_an_empty_tree(server, work, app):
    work.commit("nothing at all")
    result = work.push()
    errors = error_lines(result.stderr)
    assert len(errors) == 1 and "no compose file" in errors[0], result.stderr
    assert server.releases(app)[0]["result"] == "failed"


def test_compose_image_that_no_script_built(server, work, app, live_app, docker_client):
    compose = work.path.joinpath("compose.yaml").read_text()
    work.write("compose.yaml", compose.replace("image: middock-test/busybox", "image: nobody-built-this:1"))
    work.commit("image missing")
    result = work.push()
    errors = error_lines(result.stderr)
    assert len(errors) == 1, result.stderr
    assert "service worker: image nobody-built-this:1 does not exist; no build script built it" in errors[0]
    assert http_get(live_app) == "v1"
    tags = [tag for image in docker_client.images.list() for tag in image.tags]
    assert not [tag for tag in tags if tag.startswith(f"middock-release:{app}.r2.")]


def test_read_only_state_folder(server, work, app, live_app):
    state = server.home / ".middock" / app
    subprocess.run(["mount", "--bind", str(state), str(state)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(state)], check=True)
        work.write("page.html", "v2")
        work.commit("v2")
        result = work.push()
        errors = error_lines(result.stderr)
        assert len(errors) == 1 and "Read-only file system" in errors[0], result.stderr
        assert http_get(live_app) == "v1"
        status = server.middock("status", app)
        assert "Live release: 1" in status.stdout
    finally:
        subprocess.run(["umount", str(state)], check=True)
    result = server.middock("deploy", app)
    assert "is live" in result.stdout
    assert http_get(live_app) == "v2"


def test_build_script_that_cannot_be_run(server, work, app, live_app):
    work.write("docker/build-web.sh", "#!/nonexistent/interpreter\n", executable=True)
    work.commit("bad interpreter")
    errors = error_lines(work.push().stderr)
    assert len(errors) == 1 and "build script docker/build-web.sh cannot be run: No such file" in errors[0]
    assert http_get(live_app) == "v1"
