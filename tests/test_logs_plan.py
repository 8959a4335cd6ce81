"""Logs as plain data, without Docker: the rotation every service gets (MIDDOCK_LOG_MAX), and the
lines kept of earlier releases, merged with the live release's for `logs APP`."""

from __future__ import annotations

import pytest

from middock_receiver.errors import MiddockError
from middock_receiver.pipeline import kept_logs
from middock_receiver.pipeline.kept_logs import LogLine
from middock_receiver.runtime import overrides, side_by_side, stack_file
from middock_receiver.runtime.side_by_side import Web
from middock_receiver.state.apps import App

OWN_LOGGING = {"driver": "json-file", "options": {"max-size": "1m"}}
RESOLVED = {
    "name": "shop",
    "services": {
        "web": {"image": "sha256:aaa", "ports": [{"target": 8000, "published": "8080"}]},
        "worker": {"image": "sha256:bbb", "logging": OWN_LOGGING},
    },
}


@pytest.mark.parametrize(
    ("value", "size", "files"),
    [
        (None, "10m", 5),
        ("", "10m", 5),
        ("20m", "20m", 5),
        ("20m 3", "20m", 3),
        (" 1G\t2 ", "1g", 2),
        ("500k", "500k", 5),
    ],
)
def test_log_max_is_a_size_per_file_and_optionally_a_number_of_files(value, size, files):
    assert overrides.log_rotation(value) == overrides.LogRotation(size, files)


@pytest.mark.parametrize("value", ["abc", "20", "20mb", "0m", "-1m", "20m 0", "20m 101", "20m 3 4", "20m,3", "1.5m"])
def test_a_bad_log_max_is_refused_with_one_line(value):
    with pytest.raises(MiddockError) as refused:
        overrides.log_rotation(value)
    message = str(refused.value)
    assert "MIDDOCK_LOG_MAX" in message and repr(value.strip()) in message and "\n" not in message


def test_a_service_without_logging_gets_the_local_driver_rotated_and_one_with_its_own_keeps_it():
    rotated = overrides.with_log_rotation(RESOLVED, overrides.log_rotation("20m 3"))
    assert rotated["services"]["web"]["logging"] == {"driver": "local", "options": {"max-size": "20m", "max-file": "3"}}
    assert rotated["services"]["worker"]["logging"] == OWN_LOGGING
    assert "logging" not in RESOLVED["services"]["web"]  # the resolved configuration is left as it was


def test_the_rotation_holds_beside_the_live_release_and_on_the_swarm():
    rotated = overrides.with_log_rotation(RESOLVED, overrides.LogRotation())
    default = {"driver": "local", "options": {"max-size": "10m", "max-file": "5"}}
    beside = side_by_side.beside(rotated, "shop", "shop_r2", Web("web", 8000), [20001])
    images = {"web": "registry:5000/shop/web@sha256:1", "worker": "registry:5000/shop/worker@sha256:2"}
    stack = stack_file.stack_file(rotated, "shop", images, Web("web", 8000))
    for config in (beside, stack):
        assert config["services"]["web"]["logging"] == default
        assert config["services"]["worker"]["logging"] == OWN_LOGGING


def line(release: int, label: str, second: int, text: str) -> LogLine:
    return LogLine(release, label, f"2026-05-01T12:00:{second:02d}.000000000Z {text}".encode())


def test_kept_lines_of_earlier_releases_come_before_the_live_ones_and_the_tail_is_of_them_all():
    kept = [line(2, "web", 5, "r2 late"), line(1, "web", 9, "r1 late"), line(1, "worker", 1, "r1 early")]
    live = [line(3, "web", 7, "live b"), line(3, "worker", 6, "live a")]
    texts = [entry.raw.split(b" ", 1)[1].decode() for entry in kept_logs.merge(kept, live, None)]
    assert texts == ["r1 early", "r1 late", "r2 late", "live a", "live b"]
    assert [entry.release for entry in kept_logs.merge(kept, live, 3)] == [2, 3, 3]
    assert kept_logs.merge(kept, live, 0) == []
    assert len(kept_logs.merge(kept, live, 100)) == 5


def test_a_service_is_labelled_with_its_number_only_when_it_ran_several_containers():
    assert kept_logs.labels([("web", "1"), ("web", "2"), ("worker", "1"), ("my-app", "1")]) == [
        "web.1",
        "web.2",
        "worker",
        "my-app",
    ]


def docker_lines(*texts: str) -> bytes:
    return b"".join(f"2026-05-01T12:00:{i:02d}.000000000Z {text}\n".encode() for i, text in enumerate(texts))


def test_kept_lines_are_read_back_per_release_service_and_tail(tmp_path):
    app = App("shop", tmp_path)
    kept_logs.save(
        app, 1, {"web-1.log": docker_lines("a1", "a2"), "web-2.log": docker_lines("b1"), "my-app-1.log": b""}
    )
    kept_logs.save(app, 2, {"my-app-1.log": docker_lines("c1", "c2\rprogress", "c3")})
    lines = kept_logs.read(app, None, None)
    assert [(entry.release, entry.label) for entry in lines] == [(1, "web.1"), (1, "web.1"), (1, "web.2")] + [
        (2, "my-app")
    ] * 3
    assert lines[-2].raw.endswith(b"c2\rprogress")  # a carriage return stays inside its line
    assert [entry.raw[-2:] for entry in kept_logs.read(app, None, 2)] == [b"ss", b"c3"]  # release 1 not even read
    assert [entry.label for entry in kept_logs.read(app, "web", None)] == ["web.1", "web.1", "web.2"]
    folder = kept_logs.folder(app) / "1"
    assert not (folder / "my-app-1.log").exists()  # nothing to keep, no file
    assert folder.stat().st_mode & 0o777 == 0o700 and (folder / "web-1.log").stat().st_mode & 0o777 == 0o600


def test_a_release_kept_twice_keeps_both_and_only_the_last_releases_are_kept(tmp_path):
    app = App("shop", tmp_path)
    kept_logs.save(app, 1, {"web-1.log": docker_lines("first run")})
    kept_logs.save(app, 1, {"web-1.log": docker_lines("second run")})
    assert [entry.raw.split(b" ", 1)[1] for entry in kept_logs.read(app, None, None)] == [b"first run", b"second run"]
    for release in range(2, kept_logs.KEPT_RELEASES + 3):
        kept_logs.save(app, release, {"web-1.log": docker_lines(f"release {release}")})
    assert kept_logs.kept_releases(app) == list(range(3, kept_logs.KEPT_RELEASES + 3))
    assert not list(kept_logs.folder(app).glob("*/.*"))  # no partial files left
