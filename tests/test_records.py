"""Every record middock reads from a home is checked as it is read. A hostile value planted in
any of them (a newline that would start a crontab line, a wrong type, a huge value, bytes that
are not UTF-8, a missing key) makes the command that reads it fail with one line naming the
file: never a traceback, never a line in the crontab or in the proxies' configuration.

The records are planted as files (a release too: no deploy runs), each command run as a user
would, against the app's real crontab block."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import subprocess
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from middock_receiver.errors import MiddockError
from middock_receiver.jobs import cronfile, crontab
from middock_receiver.runtime import registry
from middock_receiver.server import keys
from middock_receiver.state import releases
from middock_receiver.state.apps import App

COMMIT = "c0ffee" * 6 + "c0de"
INJECTION = "0 0 * * *\n* * * * * touch /tmp/injected #"  # a second crontab line, were it written
HUGE = "x" * 2_000_000
NOT_UTF8 = "\udcff\udcfe"  # written as the bytes 0xff 0xfe (surrogateescape)
KINDS = ("newline", "type", "huge", "bytes", "missing")
URL = "https://hooks.example.org/deploys"


def planted_release(app: str) -> dict[str, object]:
    """The files of a live release 1 behind the edge, as a deploy leaves them (paths under the
    app's state folder)."""
    return {
        "live": "1\n",
        "releases/1/release.json": {
            "number": 1,
            "commit": COMMIT,
            "ref": "refs/heads/main",
            "subject": "first",
            "result": "succeeded",
            "stage": "retired",
            "slot": "blue",
            "project": f"{app}_r1",
            "started": 1.0,
            "finished": 2.0,
        },
        "releases/1/cron.json": [
            {
                "name": "tick",
                "schedule": "0 0 * * *",
                "fields": "0 0 * * *",
                "service": "web",
                "command": ["echo", "tick"],
                "line": 1,
            }
        ],
        "releases/1/compose.json": {"services": {"web": {"image": "middock-test/busybox"}}},
        "releases/1/env": "MIDDOCK_WEB='web:8080'\n",
    }


def request(request_id: str) -> dict:
    return {"commit": COMMIT, "ref": "refs/heads/main", "pusher": "alice", "id": request_id}


@dataclass(frozen=True)
class Record:
    """A record, where a command reads it: `path` under the app's state folder (or, starting
    with `/`, under `~/.middock`), its valid content (JSON, or text; None: the planted release's),
    the key path the hostile values go to (JSON), or each kind's text (text). `APP` in a path, a
    command or a value stands for the app's name."""

    path: str
    valid: object
    command: tuple[str, ...]  # APP: the app's name
    where: tuple[str | int, ...] = ()
    texts: dict[str, str] = field(default_factory=dict)
    required: bool = True  # whether a missing `where` is refused (else a default stands in)
    succeeds: bool = True  # the command succeeds with the valid record (else it fails otherwise)
    also: dict[str, object] = field(default_factory=dict)  # other records it needs
    lock_held: bool = False  # another deploy holds the app's deploy lock


DOTENV = {"newline": "A='1'\nB\n", "type": "1A='x'\n", "huge": f"A='{HUGE}'\n", "bytes": f"A='{NOT_UTF8}'\n"}
RECORDS = {
    "release": Record("releases/1/release.json", None, ("releases", "APP"), ("commit",)),
    "live": Record(
        "live",
        "1\n",
        ("cron", "APP"),
        texts={"newline": "1\n2\n", "type": "one\n", "huge": HUGE, "bytes": f"{NOT_UTF8}\n", "missing": ""},
    ),
    "cron.json": Record("releases/1/cron.json", None, ("cron:resume", "APP"), (0, "fields")),
    "suspension": Record(
        "cron-suspended.json", {"everything": False, "jobs": ["tick"]}, ("cron", "APP"), ("jobs", 0), required=False
    ),
    "run": Record(
        "cron/tick/1.json",
        {"number": 1, "job": "tick", "trigger": "schedule", "release": 1, "started": 1.0, "result": "succeeded"},
        ("cron:runs", "APP"),
        ("trigger",),
    ),
    "settings": Record(
        "settings.json", {"branch": "main", "keep": 5}, ("apps:set", "APP", "keep", "3"), ("branch",), required=False
    ),
    "config": Record("config.env", "A='1'\n", ("config", "APP"), texts=DOTENV),
    "release env": Record(
        "releases/1/env", None, ("ps:scale", "APP", "nosuch=1"), texts={**DOTENV, "type": "PATH\n"}, succeeds=False
    ),
    "compose": Record("releases/1/compose.json", None, ("ps:scale", "APP", "nosuch=1"), ("services",), succeeds=False),
    "scale": Record("scale.json", {"web": 1}, ("ps:scale", "APP", "web=1"), ("web",), required=False, succeeds=False),
    "hold": Record(
        "hold",
        "maintenance\n",
        ("ps:restart", "APP"),
        texts={"newline": "a\nb\n", "huge": HUGE, "bytes": f"{NOT_UTF8}\n"},
        succeeds=False,
    ),
    "queued request": Record(
        "queue/99999999999999999999-1.json", request("99999999999999999999-1"), ("ps:restart", "APP"), ("ref",)
    ),
    "started request": Record(
        "last-request.json", request("00000000000000000001-1"), ("ps:restart", "APP"), ("commit",), succeeds=False
    ),
    "deploy holder": Record(
        "deploying.json",
        {"release": 2, "commit": COMMIT, "pusher": "bob"},
        ("ps:restart", "APP"),
        ("pusher",),
        succeeds=False,
        lock_held=True,
    ),
    "preview": Record(
        "/APP--feature/preview.json",
        {"parent": "APP", "branch": "feature", "created": 1.0, "pushed": 1.0},
        ("previews", "APP"),
        ("branch",),
    ),
    "edge": Record(
        "edge.json",
        {"domains": ["shop.example.org"], "slots": {"blue": ["127.0.0.1:20001"]}, "serving": "blue"},
        ("domains", "APP"),
        ("domains", 0),
        required=False,
    ),
    "edge settings": Record(
        "/_edge/settings.json",
        {"http_port": 8080, "https_port": 8443, "tls": "acme"},
        ("edge",),
        ("tls",),
        required=False,
    ),
    "webhooks": Record(
        "notify/webhooks.json",
        {"webhooks": [{"url": URL, "events": ["deploy"], "added": 1.0}]},
        ("notify", "APP"),
        ("webhooks", 0, "url"),
    ),
    "delivery": Record(
        f"notify/last/{hashlib.sha256(URL.encode()).hexdigest()[:24]}.json",
        {"url": URL, "time": 1.0, "event": "deploy", "status": 200, "error": None, "attempts": 1},
        ("notify", "APP"),
        ("event",),
        also={"notify/webhooks.json": {"webhooks": [{"url": URL, "events": ["deploy"], "added": 1.0}]}},
    ),
    "signing secret": Record(
        "notify/secret",
        "ab" * 32 + "\n",
        ("notify:rotate-secret", "APP"),
        texts={"newline": "ab\ncd\n", "type": "not hex\n", "huge": HUGE, "bytes": f"{NOT_UTF8}\n"},
        also={"notify/webhooks.json": {"webhooks": [{"url": URL, "events": ["deploy"], "added": 1.0}]}},
    ),
    "cluster": Record(
        "/_swarm/cluster.json",
        {"advertise_addr": "10.0.0.1", "registry": "10.0.0.1:5000", "own_registry": False},
        ("nodes:join-script",),
        ("advertise_addr",),
        succeeds=False,
    ),
}


def hostile(record: Record, kind: str) -> str | None:
    """The record's text with a value of that kind planted (None: the kind does not apply)."""
    if record.texts or isinstance(record.valid, str):
        return record.texts.get(kind)
    if kind == "missing" and not record.required:
        return None
    stored = json.loads(json.dumps(record.valid))
    *outer, last = record.where
    holder = stored
    for key in outer:
        holder = holder[key]
    if kind == "missing":
        del holder[last]
    else:
        holder[last] = {"newline": INJECTION, "type": ["x"], "huge": HUGE, "bytes": "PLANTED"}[kind]
    return json.dumps(stored).replace('"PLANTED"', f'"{NOT_UTF8}"')


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(errors="surrogateescape"))


def text_of(valid: object) -> str:
    return valid if isinstance(valid, str) else json.dumps(valid, indent=2) + "\n"


def crontab_lines(home: Path) -> list[str]:
    """The lines of this user's crontab written for this home (other lines are not ours)."""
    result = subprocess.run(["crontab", "-l"], capture_output=True, text=True)
    text = result.stdout if result.returncode == 0 else ""
    return [line for line in text.splitlines() if str(home) in line or "/tmp/injected" in line]


def proxy_texts(home: Path) -> dict[str, str]:
    edge = home / ".middock" / "_edge"
    return {p.name: p.read_text(errors="replace") for p in edge.glob("*") if p.is_file() and p.name != "settings.json"}


@pytest.mark.parametrize("name", list(RECORDS))
def test_a_hostile_record_is_one_line_naming_it(server, name):
    """For each kind of hostile value: a non-zero exit, one line ` !     FILE is not a valid
    record: …; fix or remove it` on stderr, and no crontab line or proxy configuration changed."""
    record = RECORDS[name]
    app = f"rec-{uuid.uuid4().hex[:8]}"
    server.middock("apps:create", app)  # never deployed: nothing for the fixture to clean up in Docker
    state = server.home / ".middock" / app
    files = {**planted_release(app), **record.also}
    for relative, valid in files.items():
        write(state / relative, text_of(valid))
    valid = record.valid if record.valid is not None else files[record.path]
    record = replace(record, valid=json.loads(json.dumps(valid).replace('"APP', f'"{app}')))
    path = state / record.path if not record.path.startswith("/") else server.home / ".middock" / record.path[1:]
    path = Path(str(path).replace("APP", app))
    command = [word.replace("APP", app) for word in record.command]
    lock = hold_deploy_lock(state) if record.lock_held else None
    try:
        write(path, text_of(record.valid))
        if name == "cron.json":  # the app's block, written from the valid record
            server.middock(*command)
            assert len(crontab_lines(server.home)) == 3  # begin, the job's line, end
        elif record.succeeds:
            server.middock(*command)
        lines, proxies = crontab_lines(server.home), proxy_texts(server.home)
        problems = []
        for kind in KINDS:
            text = hostile(record, kind)
            if text is None:
                continue
            write(path, text)
            result = server.middock(*command, check=False)
            stderr = result.stderr.splitlines()
            if result.returncode == 0 or len(stderr) != 1 or str(path) not in stderr[0] or "Traceback" in result.stdout:
                problems.append(f"{kind}: exit {result.returncode}, stderr {result.stderr[:400]!r}")
            elif not stderr[0].startswith(" !     ") or "is not a valid record" not in stderr[0]:
                problems.append(f"{kind}: {stderr[0][:400]!r}")
            if crontab_lines(server.home) != lines or proxy_texts(server.home) != proxies:
                problems.append(f"{kind}: the crontab or a proxy's configuration changed")
        assert not problems, "\n".join(problems)
        assert not Path("/tmp/injected").exists()
    finally:
        if lock is not None:
            lock.cancel()
            lock.function()
        crontab.apply(App(app, server.home), [])


def hold_deploy_lock(state: Path) -> threading.Timer:
    """Hold the app's deploy lock as a deploy would, let go after 60 s at the latest (a check
    that missed would leave the command waiting for it); `.function()` lets go at once."""
    fd = os.open(state / "deploy.lock", os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    released = threading.Event()

    def release() -> None:
        if not released.is_set():
            released.set()
            os.close(fd)

    timer = threading.Timer(60, release)
    timer.start()
    return timer


UNIT_READERS: dict[str, tuple[str, str, Callable[[Path], object]]] = {
    # records read only inside a deploy, or outside a middock home: their readers, called directly
    "kept containers": (
        ".middock/shop/kept.json",
        '{"release": 1, "project": "other_r1"}',
        lambda home: releases.kept(App("shop", home)),
    ),
    "registry password": (
        ".middock/_swarm/registry/pull.password",
        "pass\nword\n",
        lambda home: registry.read_password(registry.Files(home / ".middock/_swarm/registry"), "pull"),
    ),
    "registry CA": (
        ".middock/_swarm/registry/ca.crt",
        NOT_UTF8,
        lambda home: registry.read_ca(home / ".middock/_swarm/registry/ca.crt"),
    ),
    "authorized keys": (
        ".ssh/authorized_keys",
        f"ssh-ed25519 {NOT_UTF8}\n",
        lambda home: keys.read(home / ".ssh/authorized_keys"),
    ),
}


@pytest.mark.parametrize("name", list(UNIT_READERS))
def test_records_read_inside_a_deploy_unit(tmp_path, name):
    """The same for records no quick command reads: one error naming the file."""
    relative, text, read = UNIT_READERS[name]
    write(tmp_path / relative, text)
    with pytest.raises(MiddockError, match=str(tmp_path / relative)):
        read(tmp_path)


def test_a_record_planted_as_a_link_or_a_pipe_is_refused_unit(tmp_path):
    """A record is a regular file: a link to another file (root reads some records) or a pipe
    (a reader would wait on it for ever) is one error naming it."""
    (tmp_path / "elsewhere.json").write_text("[]")
    (tmp_path / "link").mkdir()
    (tmp_path / "link" / "cron.json").symlink_to(tmp_path / "elsewhere.json")
    (tmp_path / "pipe").mkdir()
    os.mkfifo(tmp_path / "pipe" / "cron.json")
    for folder, reason in (("link", "a symbolic link"), ("pipe", "not a regular file")):
        with pytest.raises(MiddockError, match=f"{tmp_path / folder / 'cron.json'} is not a valid record: {reason}"):
            cronfile.load(tmp_path / folder)
