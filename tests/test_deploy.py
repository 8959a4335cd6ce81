"""The deploy core end to end: real git pushes to a real Docker Engine."""

from __future__ import annotations

import json
import subprocess
import uuid
from types import SimpleNamespace

from support.apps import BUILD_WEB, write_busybox_app
from support.images import BUSYBOX_IMAGE
from support.middock import Workdir
from support.ports import free_port
from support.web import http_get

from middock_receiver.pipeline import health
from middock_receiver.runtime.compose import PROJECT_LABEL, SERVICE_LABEL


def test_push_v1_then_v2_serves_each_and_lists_both(server, work, app):
    port = free_port()
    write_busybox_app(work, port, "v1")
    work.commit("first version")
    first = work.push()
    assert first.returncode == 0, first.stderr
    assert "-----> Release 1" in first.stderr and "is live" in first.stderr
    assert http_get(port) == "v1"

    work.write("page.html", "v2")
    work.commit("second version")
    second = work.push()
    assert "-----> Release 2" in second.stderr
    assert http_get(port) == "v2"

    releases = json.loads(server.middock("releases", app, "--json").stdout)
    assert [(r["number"], r["result"], r["live"]) for r in releases] == [
        (1, "succeeded", False),
        (2, "succeeded", True),
    ]
    assert releases[1]["subject"] == "second version"


def deploy_v1(work, port):
    write_busybox_app(work, port, "v1")
    work.commit("v1")
    result = work.push()
    assert "is live" in result.stderr, result.stderr
    assert http_get(port) == "v1"


def test_failing_build_script_keeps_the_running_release(server, work, app):
    port = free_port()
    deploy_v1(work, port)
    work.write("page.html", "v2")
    work.write("docker/build-web.sh", "#!/bin/sh\necho about to fail\nexit 3\n", executable=True)
    work.commit("broken build")
    result = work.push()

    assert "about to fail" in result.stderr
    last = [line for line in result.stderr.splitlines() if line.strip()][-3]
    assert "build script docker/build-web.sh failed with exit code 3" in result.stderr
    assert "release 1" in last and "still serving" in last, result.stderr
    assert http_get(port) == "v1"
    history = server.releases(app)
    assert history[-1]["result"] == "failed" and history[-1]["live"] is False
    assert "exit code 3" in server.middock("releases:output", app, "2").stdout


def test_health_gate_failure_rolls_back_to_the_previous_release(server, work, app):
    port = free_port()
    deploy_v1(work, port)
    compose = (work.path / "compose.yaml").read_text()
    unhealthy = compose.replace(
        "    stop_grace_period: 1s\n  worker:",
        '    stop_grace_period: 1s\n    healthcheck:\n      test: ["CMD", "false"]\n'
        "      interval: 1s\n      retries: 1\n  worker:",
    )
    work.write("compose.yaml", unhealthy)
    work.write("middock.env", "MIDDOCK_HEALTH_TIMEOUT=4\n")
    work.write("page.html", "v2")
    work.commit("never healthy")
    result = work.push()

    assert "health check failed: web" in result.stderr
    assert "Rolling back to release 1" in result.stderr
    assert "rolled back to release 1" in result.stderr
    assert http_get(port) == "v1"
    assert server.releases(app)[-1]["result"] == "failed"
    status = json.loads(server.middock("status", app, "--json").stdout)
    assert status["live"]["number"] == 1


def test_first_deploy_failing_health_gate_stops_the_stack(server, work, app, docker_client):
    port = free_port()
    write_busybox_app(work, port)
    work.write("middock.env", "MIDDOCK_HEALTH_TIMEOUT=2\n")
    compose = (work.path / "compose.yaml").read_text().replace('command: ["sleep", "1000000"]', 'command: ["false"]')
    work.write("compose.yaml", compose)
    work.commit("worker exits")
    result = work.push()
    assert "worker" in result.stderr and "nothing is running" in result.stderr
    assert docker_client.containers.list(filters={"label": f"com.docker.compose.project={app}"}) == []


LATEST_ONLY = BUILD_WEB.replace("$IMAGE_TAG", "latest").replace("set -e\n", "set -e\necho BUILD RAN\n")


def test_rollback_brings_back_a_latest_only_image_without_building(server, work, app):
    port = free_port()
    write_busybox_app(work, port, "one")
    work.write("docker/build-web.sh", LATEST_ONLY, executable=True)
    work.write("compose.yaml", (work.path / "compose.yaml").read_text().replace("${IMAGE_TAG}", "latest"))
    work.commit("one")
    work.push()
    assert http_get(port) == "one"
    work.write("page.html", "two")
    work.commit("two")
    work.push()
    assert http_get(port) == "two"

    result = server.middock("rollback", app)
    assert "BUILD RAN" not in result.stdout
    assert "Rolling back to release 1:" in result.stdout and "is live" in result.stdout
    assert http_get(port) == "one"
    history = server.releases(app)
    assert history[-1]["kind"] == "rollback to 1" and history[-1]["live"]

    server.middock("rollback", app, "2")
    assert http_get(port) == "two"


def test_other_branches_tags_and_deleting_the_branch_deploy_nothing(server, work, app):
    port = free_port()
    deploy_v1(work, port)
    work.write("page.html", "feature")
    work.commit("feature work")

    other = work.push("HEAD:refs/heads/feature")
    assert "branch feature accepted, not deployed (only main deploys)" in other.stderr
    work.git("tag", "v9")
    tag = work.push("v9")
    assert "tag v9 accepted, not deployed" in tag.stderr
    deleted = work.push(":main")
    assert "branch main deleted: nothing deployed, nothing stopped" in deleted.stderr
    for result in (other, tag, deleted):
        assert result.returncode == 0
        assert "-----> Deploying" not in result.stderr
    assert http_get(port) == "v1"
    assert len(server.releases(app)) == 1


def failing_push(work, *edits) -> str:
    """Apply edits, commit, push; returns the one error line the pusher sees."""
    for edit in edits:
        edit()
    work.commit("bad input")
    result = work.push()
    errors = [line for line in result.stderr.splitlines() if line.startswith("remote:  !     ")]
    assert len(errors) == 1, result.stderr
    return errors[0]


def test_missing_compose_file_is_one_clear_error(server, work, app):
    write_busybox_app(work, free_port())
    (work.path / "compose.yaml").unlink()
    assert "no compose file in the repository root" in failing_push(work)


def test_invalid_compose_file_is_one_clear_error(server, work, app):
    write_busybox_app(work, free_port())
    line = failing_push(work, lambda: work.write("compose.yaml", "services:\n  web:\n    image: [unclosed\n"))
    assert "invalid compose file" in line


def test_build_script_without_exec_bit_is_one_clear_error(server, work, app):
    write_busybox_app(work, free_port())
    line = failing_push(work, lambda: (work.path / "docker/build-web.sh").chmod(0o644))
    assert "build script docker/build-web.sh is not executable" in line


def test_invalid_app_names_are_refused(server):
    for name in ("Bad", "-x", "a_b", "a" * 64, "../etc", ""):
        result = server.middock("apps:create", "--", name, check=False)
        assert result.returncode != 0
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert "invalid app name" in result.stderr
    assert not any(server.home.iterdir()) or not list(server.home.glob("*.git"))


def project_containers(client, app: str) -> dict[str, str]:
    """The app's containers (name -> id), stopped ones too."""
    listed = client.containers.list(all=True, filters={"label": f"com.docker.compose.project={app}"})
    return {c.name: c.id for c in listed}


def app_image_tags(client, app: str) -> list[str]:
    """Every image tag of the app: what its build script made and middock's release pins."""
    tags = [tag for image in client.images.list() for tag in image.tags]
    return [tag for tag in tags if tag.startswith((f"{app}-web:", f"middock-release:{app}."))]


def test_retention_and_destroy_only_touch_this_apps_images(server, work, app, docker_client):
    """Pruning keeps five good releases and their images; apps:destroy (only with --force)
    removes the app's containers, network, images, repository and state. Another app's
    containers and images, and images no build script of the app made, are never touched."""
    port, other_port = free_port(), free_port()
    other = Workdir(work.path.parent / "other")
    other_app = server.create_app("other")
    other.git("remote", "add", "production", str(server.repo_path(other_app)))
    write_busybox_app(other, other_port, "other")
    other.commit("other app")
    assert "is live" in other.push().stderr
    other_containers = project_containers(docker_client, other_app)
    other_images = {docker_client.containers.get(id_).image.id for id_ in other_containers.values()}
    assert len(other_containers) == 2 and len(other_images) == 2, other_containers

    commits = []
    for n in range(1, 8):
        write_busybox_app(work, port, f"v{n}")
        commits.append(work.commit(f"v{n}"))
        assert "is live" in work.push().stderr
    assert http_get(port) == "v7"

    server.wait_idle(app)  # pruning is part of the retirement that follows live
    history = server.releases(app)
    assert [r["pruned"] for r in history] == [True, True, False, False, False, False, False]
    for commit in commits[:2]:
        assert not docker_client.images.list(name=f"{app}-web:{commit[:12]}")
    for commit in commits[2:]:
        assert docker_client.images.list(name=f"{app}-web:{commit[:12]}")
    failed = server.middock("rollback", app, "1", check=False)
    assert failed.returncode != 0 and "cannot be rolled back to" in failed.stderr

    refused = server.middock("apps:destroy", app, check=False)
    assert refused.returncode != 0 and len(refused.stderr.splitlines()) == 1, refused.stderr
    assert "--force" in refused.stderr
    assert server.repo_path(app).is_dir() and http_get(port) == "v7"

    destroyed = server.middock("apps:destroy", app, "--force")
    assert f"Destroyed {app}" in destroyed.stdout
    assert project_containers(docker_client, app) == {}
    assert docker_client.networks.list(filters={"label": f"com.docker.compose.project={app}"}) == []
    assert app_image_tags(docker_client, app) == []
    assert not server.repo_path(app).exists() and not (server.home / ".middock" / app).exists()
    assert app not in {row["app"] for row in json.loads(server.middock("apps", "--json").stdout)}
    gone = server.middock("status", app, check=False)
    assert gone.returncode != 0 and "does not exist" in gone.stderr, gone.stderr

    assert project_containers(docker_client, other_app) == other_containers
    for image_id in other_images:
        docker_client.images.get(image_id)
    docker_client.images.get("middock-test/busybox")
    assert http_get(other_port) == "other"


def test_clone_checks_out_the_deploy_branch(server, work, app, tmp_path):
    """The server's HEAD names the deploy branch, even when another branch points elsewhere, and
    follows `apps:set APP branch`."""
    write_busybox_app(work, free_port(), "main page")
    main = work.commit("on main")
    work.git("checkout", "-q", "-b", "another")
    work.write("page.html", "another page")
    another = work.commit("on another")
    work.push("main:refs/heads/main", "another:refs/heads/another")
    for branch, commit, page in (("main", main, "main page"), ("another", another, "another page")):
        server.middock("apps:set", app, "branch", branch)
        clone = tmp_path / f"clone-{branch}"
        work.git("clone", "-q", str(server.repo_path(app)), str(clone))
        assert work.git("-C", str(clone), "rev-parse", "HEAD").stdout.strip() == commit
        assert work.git("-C", str(clone), "symbolic-ref", "HEAD").stdout.strip() == f"refs/heads/{branch}"
        assert (clone / "page.html").read_text() == page


def test_deploy_a_branch_a_tag_or_a_commit_without_a_push(server, work, app, docker_client):
    """`deploy APP REF` puts exactly that commit live, recorded with its ref; a ref the repository
    does not have is refused with one line, and nothing changes."""
    port = free_port()
    commits = {}
    for page, refspec in (("feature", "HEAD:refs/heads/feature"), ("tagged", "t1"), ("by-sha", "HEAD:refs/heads/x")):
        write_busybox_app(work, port, page)
        commits[page] = work.commit(page)
        if refspec == "t1":
            work.git("tag", "t1")
        pushed = work.push(refspec)
        assert pushed.returncode == 0 and "-----> Deploying" not in pushed.stderr, pushed.stderr
    assert server.releases(app) == []

    for ref, page, recorded in (
        ("feature", "feature", "refs/heads/feature"),
        ("t1", "tagged", "refs/tags/t1"),
        (commits["by-sha"][:7], "by-sha", commits["by-sha"][:7]),  # as `releases` shows it
    ):
        deployed = server.middock("deploy", app, ref)
        assert "is live" in deployed.stdout, deployed.stdout
        assert http_get(port) == page
        last = server.releases(app)[-1]
        assert (last["commit"], last["ref"], last["live"]) == (commits[page], recorded, True)

    serving = project_containers(docker_client, app)
    for bad in ("nope", "f" * 40, "feature..t1"):
        refused = server.middock("deploy", app, bad, check=False)
        assert refused.returncode != 0 and len(refused.stderr.splitlines()) == 1, refused.stderr
        assert "is not a branch, tag or commit" in refused.stderr, refused.stderr
    assert len(server.releases(app)) == 3 and http_get(port) == "by-sha"
    assert project_containers(docker_client, app) == serving


def test_a_push_from_a_minimal_environment_and_another_folder_deploys(server, work, app, tmp_path):
    port = free_port()
    write_busybox_app(work, port, "minimal")
    work.commit("minimal env")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = subprocess.run(
        ["/usr/bin/git", "-C", str(work.path), "push", "production", "main"],
        cwd=elsewhere,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert "is live" in result.stderr, result.stderr
    assert http_get(port) == "minimal"


def test_the_gate_runs_a_containers_own_healthcheck_at_once_and_takes_its_verdict(docker_client):
    """Docker runs a container's first healthcheck only after its `interval`; the gate runs it at
    once, by exec, and again until it passes: one that fails holds the gate until its timeout
    (with Docker's word for the container), one that passes opens it while Docker still says
    "starting"."""
    project = f"quick-{uuid.uuid4().hex[:8]}"
    container = docker_client.containers.run(
        BUSYBOX_IMAGE,
        ["sleep", "1000000"],
        detach=True,
        init=True,
        labels={PROJECT_LABEL: project, SERVICE_LABEL: "web"},
        healthcheck={"test": ["CMD-SHELL", "test -f /ok"], "interval": 600_000_000_000},
    )
    try:
        assert health.problems(docker_client, project, ["web"]) == [f"web: {container.name} is starting"]
        assert health.wait_healthy(docker_client, project, ["web"], 1.0) == [f"web: {container.name} is starting"]
        container.exec_run(["sh", "-c", ": >/ok"])
        assert health.wait_healthy(docker_client, project, ["web"], 60.0) == []
        container.reload()
        assert container.attrs["State"]["Health"]["Status"] == "starting"  # Docker has not run it yet
    finally:
        container.remove(force=True)


def test_the_gate_runs_a_healthcheck_as_docker_does():
    """A CMD runs as it is, a CMD-SHELL under the container's shell (its SHELL, else /bin/sh -c),
    and NONE (or no healthcheck) is nothing to run."""

    def command(test: list[str], shell: list[str] | None = None) -> list[str] | None:
        container = SimpleNamespace(attrs={"Config": {"Healthcheck": {"Test": test}, "Shell": shell}})
        return health.healthcheck_command(container)

    assert command(["CMD", "wget", "-q", "http://127.0.0.1/"]) == ["wget", "-q", "http://127.0.0.1/"]
    assert command(["CMD-SHELL", "test -f /ok || exit 1"]) == ["/bin/sh", "-c", "test -f /ok || exit 1"]
    bash = ["/bin/bash", "-o", "pipefail", "-c"]
    assert command(["CMD-SHELL", "curl -f localhost | grep ok"], bash) == [*bash, "curl -f localhost | grep ok"]
    assert command(["NONE"]) is None and command([]) is None
