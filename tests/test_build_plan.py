"""Which build scripts run, and which of them side by side, without Docker: neighbours whose names
start with the same number form a group, the groups run one after the other."""

from __future__ import annotations

from pathlib import Path

from middock_receiver.runtime.plan import build_scripts, script_groups


def test_scripts_with_the_same_leading_number_run_together_then_the_next_number():
    scripts = ["docker/build-1-api.sh", "docker/build-1-web.sh", "docker/build-2-frontend.sh"]
    assert script_groups(scripts) == [
        ("docker/build-1-api.sh", "docker/build-1-web.sh"),
        ("docker/build-2-frontend.sh",),
    ]


def test_scripts_without_a_number_each_run_alone_in_their_order():
    scripts = ["docker/build-web.sh", "docker/build-worker.sh", "docker/build.sh"]
    assert script_groups(scripts) == [(script,) for script in scripts]


def test_the_number_may_follow_build_or_stand_first_and_leading_zeros_do_not_count():
    scripts = ["docker/build1-a.sh", "docker/build_1_b.sh", "ci/01-c.sh", "1.sh", "docker/build-10-d.sh", "x-1.sh"]
    assert script_groups(scripts) == [
        ("docker/build1-a.sh", "docker/build_1_b.sh", "ci/01-c.sh", "1.sh"),
        ("docker/build-10-d.sh",),
        ("x-1.sh",),
    ]


def test_an_explicit_list_keeps_its_order_and_groups_only_neighbours():
    """MIDDOCK_BUILD_SCRIPTS=… runs in the order written: the same number apart is two groups."""
    env = {"MIDDOCK_BUILD_SCRIPTS": "docker/build-1-api.sh  docker/base.sh docker/build-1-web.sh\tdocker/build-0-x.sh"}
    assert build_scripts(Path("/nonexistent"), env) == [
        ("docker/build-1-api.sh",),
        ("docker/base.sh",),
        ("docker/build-1-web.sh",),
        ("docker/build-0-x.sh",),
    ]


def test_an_empty_list_runs_no_script(tmp_path: Path):
    (tmp_path / "docker").mkdir()
    (tmp_path / "docker" / "build.sh").write_text("#!/bin/sh\n")
    assert build_scripts(tmp_path, {"MIDDOCK_BUILD_SCRIPTS": ""}) == []
    assert build_scripts(tmp_path, {"MIDDOCK_BUILD_SCRIPTS": "  "}) == []


def test_by_default_every_docker_build_script_by_name_in_groups(tmp_path: Path):
    docker = tmp_path / "docker"
    docker.mkdir()
    for name in ("build-2-frontend.sh", "build-1-web.sh", "build-0-base.sh", "build-1-api.sh", "build-x.sh"):
        (docker / name).write_text("#!/bin/sh\n")
    (docker / "build-1-dir.sh").mkdir()
    (docker / "other.sh").write_text("#!/bin/sh\n")
    assert build_scripts(tmp_path, {}) == [
        ("docker/build-0-base.sh",),
        ("docker/build-1-api.sh", "docker/build-1-web.sh"),
        ("docker/build-2-frontend.sh",),
        ("docker/build-x.sh",),
    ]
    assert build_scripts(tmp_path / "none", {}) == []
