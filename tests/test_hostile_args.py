"""No tracebacks, anywhere: every command, given a hostile value in any name-like argument or
setting (a newline, 10 kB, `../`, bytes that are not UTF-8, a leading `-`, nothing at all, `²`),
answers with one line on stderr and a non-zero exit, and changes nothing: not a file of the
home, not a container. The same words sent through an SSH key's forced command (sshd puts them in
SSH_ORIGINAL_COMMAND) get the same answer. Config values, a lock's reason and `run`'s command
may hold anything: there, nothing crashes.

The table lists every command of the CLI's own registry (a new command without a row fails
here). Commands run against one home made once: `{A}` is an app with no release, `{L}` an app
with a live release (where a name is checked only once there is something to find), `{H}` is
the hostile value. Root's commands run in a home of their own owned by a throwaway user, so
`keys:*` can only ever touch that user's `authorized_keys`.
"""

from __future__ import annotations

import os
import pwd
import shlex
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from support.apps import write_busybox_app
from support.middock import Server, Workdir
from support.ports import free_port
from support.ssh_server import make_key, remove_user, world_readable_dir

from middock_receiver.cli import load_all
from middock_receiver.errors import one_line, quoted
from middock_receiver.server.ssh import LOCAL_ONLY
from middock_receiver.state.apps import DEFAULT_SETTINGS

pytestmark = pytest.mark.xdist_group("hostile-args")  # its tests share one bed, made once

NON_UTF8 = os.fsdecode(b"\xff\xfe")  # what Python makes of those bytes in argv (surrogateescape)
HOSTILE = {
    "newline": "a\nb",
    "10kB": "a" * 10240,
    "dotdot": "../x",
    "non-utf8": NON_UTF8,
    "dash": "-x",
    "empty": "",
    "superscript": "²",  # a digit to str.isdigit, not to int()
}
HELP = "--help"  # argparse's own, in each command's first row: its usage and exit 0, or one line; nothing changed
OVER_SSH = ("newline", "non-utf8", "10kB")  # inside an SSH request line, where a shell would split or choke
GOOD_IN = {  # the rows where one of these values is a good one
    "": {("acme-email={H}",), ("acme-ca={H}",), ("acme-ca-root={H}",), ("dashboard={H}",)},  # `=` unsets it
    "²": {("{A}", "branch", "{H}")},  # git takes a branch name in any script
}

TABLE: dict[str, list[tuple[str, ...]]] = {
    "apps": [("--user", "{H}")],
    "apps:create": [("{H}",)],
    "apps:destroy": [("{H}", "--force")],
    "audit": [("{H}",), ("-n", "{H}")],
    "apps:set": [
        ("{H}", "keep", "3"),
        ("{A}", "{H}", "on"),
        *[("{A}", key, "{H}") for key in DEFAULT_SETTINGS],
    ],
    "config": [("{H}",)],
    "config:set": [("{H}", "K=v"), ("{A}", "{H}"), ("{A}", "{H}=v")],
    "config:unset": [("{H}", "K"), ("{A}", "{H}")],
    "cron": [("{H}",)],
    "cron:output": [("{H}", "job"), ("{L}", "{H}"), ("{L}", "job", "{H}")],
    "cron:resume": [("{H}",), ("{L}", "{H}")],
    "cron:run": [("{H}", "job"), ("{L}", "{H}")],
    "cron:runs": [("{H}",), ("{L}", "{H}")],
    "cron:suspend": [("{H}",), ("{L}", "{H}")],
    "dashboard": [("{H}",)],
    "dashboard:install": [("--user", "{H}")],
    "dashboard:logout-all": [("{H}",)],
    "dashboard:serve": [("--idle", "{H}")],
    "deploy": [("{H}",), ("{L}", "{H}")],
    "domains": [("{H}",)],
    "domains:add": [("{H}", "www.example.org"), ("{A}", "{H}")],
    "domains:remove": [("{H}", "www.example.org"), ("{A}", "{H}")],
    "edge": [("--user", "{H}")],
    "edge:set": [
        ("{H}",),
        ("{H}=1",),
        *[(f"{key}={{H}}",) for key in ("http-port", "https-port", "acme-email", "acme-ca", "acme-ca-root", "tls")],
        *[(f"{key}={{H}}",) for key in ("dashboard", "dashboard-port")],
    ],
    "edge:start": [("--user", "{H}")],
    "edge:stop": [("--user", "{H}")],
    "help": [("{H}",)],
    "keys:add": [("{H}", "{K}"), ("alice", "{H}")],
    "keys:list": [("--user", "{H}")],
    "keys:remove": [("{H}",)],
    "keys:set": [("{H}", "--role", "read"), ("alice", "--role", "{H}"), ("alice", "--role", "read", "--apps", "{H}")],
    "lock": [("{H}",)],
    "logs": [("{H}",), ("{L}", "--service", "{H}"), ("{L}", "-n", "{H}"), ("{L}", "--release", "{H}")],
    "maintenance": [("{H}",)],
    "maintenance:off": [("{H}",)],
    "maintenance:on": [("{H}",)],
    "networks": [("{H}",)],
    "nodes": [("--user", "{H}")],
    "nodes:activate": [("{H}",)],
    "nodes:drain": [("{H}",)],
    "nodes:join-script": [("--user", "{H}")],
    "nodes:remove": [("{H}",)],
    "notify": [("{H}",)],
    "notify:add": [
        ("{H}", "https://hooks.example.org/x"),
        ("{A}", "{H}"),
        ("{A}", "https://hooks.example.org/x", "--events", "{H}"),
    ],
    "notify:remove": [("{H}", "https://hooks.example.org/x"), ("{A}", "{H}")],
    "notify:rotate-secret": [("{H}",)],
    "notify:test": [("{H}",)],
    "previews": [("{H}",)],
    "previews:destroy": [("{H}", "feature"), ("{L}", "{H}")],
    "previews:expire": [("{H}",)],
    "ps": [("{H}",)],
    "ps:restart": [("{H}",), ("{L}", "{H}")],
    "ps:scale": [("{H}",), ("{L}", "{H}"), ("{L}", "{H}=1"), ("{L}", "worker={H}")],
    "ps:start": [("{H}",)],
    "ps:stop": [("{H}",)],
    "refresh": [("--user", "{H}")],
    "releases": [("{H}",)],
    "releases:output": [("{H}",), ("{L}", "{H}")],
    "rollback": [("{H}",), ("{L}", "{H}")],
    "run": [("{H}", "worker", "true"), ("{L}", "{H}", "true")],
    "ssh-serve": [("--key", "{H}")],
    "status": [("{H}",)],
    "swarm:init": [
        ("--advertise-addr", "{H}"),
        ("--registry", "{H}"),
        ("--registry-ca", "{H}"),
        ("--registry-port", "{H}"),
        ("--certs-dir", "{H}"),
    ],
    "unlock": [("{H}",)],
    "version": [("{H}",)],
}
# run in the throwaway user's home
ROOTS_OWN = frozenset({"keys:add", "keys:list", "keys:set", "keys:remove", "refresh"})

# Values that may legitimately hold anything: only a crash is wrong.
FREE_TEXT: list[tuple[str, ...]] = [
    ("config:set", "{A}", "--no-deploy", "K={H}"),
    ("lock", "{A}", "{H}"),
    ("run", "{L}", "worker", "echo", "{H}"),
]


@dataclass
class Bed:
    server: Server
    root: Path  # everything the test made lives under it: the snapshot covers it all
    cwd: Path  # the commands' working folder: a relative `../x` lands beside it
    bare: str
    live: str
    user_env: dict
    public_key: Path

    def words(self, template: tuple[str, ...], value: str) -> list[str]:
        fields = {"H": value, "A": self.bare, "L": self.live, "K": str(self.public_key)}
        return [word.format(**fields) for word in template]

    def env(self, command: str) -> dict:
        env = self.user_env if command in ROOTS_OWN else self.server.env
        if command == "swarm:init":  # it can never make this machine a Swarm manager, whatever it accepts
            env = {**env, "DOCKER_HOST": f"unix://{self.root}/no-docker.sock"}
        return env

    def run(self, argv: list[str], env: dict) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "middock_receiver", *argv],
            env=env,
            cwd=self.cwd,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=120,
        )

    def over_ssh(self, request: str, env: dict) -> subprocess.CompletedProcess:
        """What sshd runs for a key: the forced command, the client's words in SSH_ORIGINAL_COMMAND."""
        return self.run(["ssh-serve", "--key", "tester"], {**env, "SSH_ORIGINAL_COMMAND": os.fsencode(request)})


@pytest.fixture(scope="module")
def bed(tmp_path_factory, docker_client) -> Iterator[Bed]:
    root = tmp_path_factory.mktemp("hostile")
    server = Server(root / "home")
    cwd = root / "cwd" / "here"
    cwd.mkdir(parents=True)
    user = f"mdk-{uuid.uuid4().hex[:8]}"
    user_home = world_readable_dir("middock-hostile-") / user
    subprocess.run(
        ["useradd", "--create-home", "--home-dir", str(user_home), "--shell", "/usr/sbin/nologin", user], check=True
    )
    try:
        bare = server.create_app("bare")
        live = server.create_app("live")
        work = Workdir(root / "work")
        work.git("remote", "add", "production", str(server.repo_path(live)))
        write_busybox_app(work, free_port())
        work.commit("v1")
        assert "is live" in work.push().stderr
        server.wait_idle(live)
        user_env = {**os.environ, "MIDDOCK_HOME": str(user_home)}
        # its audit log, made before any snapshot: each attempted change adds a line there
        subprocess.run(
            [sys.executable, "-m", "middock_receiver", "keys:remove", "nobody"], env=user_env, capture_output=True
        )
        yield Bed(
            server,
            root,
            cwd,
            bare,
            live,
            user_env,
            make_key(root, "alice").with_suffix(".pub"),
        )
    finally:
        server.cleanup()
        remove_user(user)
        shutil.rmtree(user_home.parent, ignore_errors=True)


def file_tree(*tops: Path) -> dict[str, tuple[int, int]]:
    """Every path under `tops` with its size and mtime (a folder's mtime moves when an entry
    comes or goes); symlinks are not followed. The audit log is left out: it records each
    attempt to change something, refused by the command or not."""
    found = {}
    for top in tops:
        for folder, dirs, files in os.walk(top):
            for name in [".", *dirs, *files]:
                if name.startswith("audit."):
                    continue
                path = os.path.join(folder, name)
                info = os.lstat(path)
                found[path] = (info.st_size, info.st_mtime_ns)
    return found


def watched_keys() -> list[Path]:
    """The real machine's keys files, which no test may ever touch."""
    users = [pwd.getpwnam("root"), *deploy_user()]
    return [Path(user.pw_dir) / ".ssh" / "authorized_keys" for user in users] + [
        Path("/etc/middock/authorized_keys") / user.pw_name for user in users
    ]


def deploy_user() -> list[pwd.struct_passwd]:
    try:
        return [pwd.getpwnam("deploy")]
    except KeyError:
        return []


def snapshot(bed: Bed) -> tuple:
    """The test's files (homes, working folder), the real keys files, and the apps' containers."""
    user_home = Path(bed.user_env["MIDDOCK_HOME"])
    keys = {str(path): (path.stat().st_size, path.stat().st_mtime_ns) for path in watched_keys() if path.exists()}
    containers = subprocess.run(
        ["docker", "ps", "-a", "--format", "{{.ID}} {{.State}} {{.Names}}"]
        + [f"--filter=label=com.docker.compose.project={app}" for app in (bed.bare, bed.live)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return file_tree(bed.root, user_home), keys, sorted(containers.splitlines())


def shown(result: subprocess.CompletedProcess) -> str:
    return f"exit {result.returncode}\nstdout: {text(result.stdout)[:2000]}\nstderr: {text(result.stderr)[:2000]}"


def text(data: bytes) -> str:
    return data.decode("utf-8", "backslashreplace")


def crashed(result: subprocess.CompletedProcess) -> bool:
    return b"Traceback" in result.stdout + result.stderr


def one_error_line(result: subprocess.CompletedProcess) -> bool:
    """Exactly one line on stderr, middock's ` !     …` (a line ends only at `\\n`)."""
    return result.stderr.count(b"\n") == 1 and result.stderr.endswith(b"\n") and result.stderr.startswith(b" !     ")


def refused(result: subprocess.CompletedProcess, value: str) -> bool:
    if crashed(result):
        return False
    if value == HELP and result.returncode == 0:
        return b"usage:" in result.stdout  # argparse's help, and nothing run
    return result.returncode != 0 and one_error_line(result)


def cases(bed: Bed, command: str, values: list[str]) -> list[tuple[str, list[str]]]:
    return [
        (value, [command, *bed.words(template, value)])
        for row, template in enumerate(TABLE[command])
        for value in values
        if template not in GOOD_IN.get(value, ()) and (value != HELP or row == 0)
    ]


def differences(before: tuple, after: tuple) -> list[str]:
    changed = []
    for name, old, new in zip(("files", "real keys", "containers"), before, after, strict=True):
        if isinstance(old, dict):
            changed += [f"{name}: {path}" for path in sorted(set(old) | set(new)) if old.get(path) != new.get(path)]
        elif old != new:
            changed.append(f"{name}: {old} -> {new}")
    return changed


def check_batch(
    bed: Bed, command: str, runs: list[tuple[str, list[str], Callable[[], subprocess.CompletedProcess]]]
) -> list[subprocess.CompletedProcess]:
    """Run each case (a few at a time), then assert each was refused and nothing changed."""
    before = snapshot(bed)
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda case: case[2](), runs))
    failures = [
        f"{argv!r}:\n{shown(result)}"
        for (value, argv, _), result in zip(runs, results, strict=True)
        if not refused(result, value)
    ]
    assert not failures, f"{len(failures)} of {len(runs)} not refused in one line:\n\n" + "\n\n".join(failures)
    changed = differences(before, snapshot(bed))
    assert not changed, f"{command} with hostile values changed:\n" + "\n".join(changed[:40])
    return results


def test_an_error_line_shows_what_was_typed_on_one_line():
    assert one_line(f"app 'a\nb\x1b[2J{NON_UTF8}é'") == "app 'a\\nb\\x1b[2J\\xff\\xfeé'"
    assert quoted("a" * 100) == f"'{'a' * 80}'…"


def test_the_table_covers_every_command():
    assert sorted(TABLE) == sorted(load_all())


@pytest.mark.parametrize("command", sorted(TABLE))
def test_hostile_values_are_refused_in_one_line(bed, command):
    """`middock COMMAND …` with a hostile name: ` !     …` and a non-zero exit, nothing changed."""
    env = bed.env(command)
    if command == "ssh-serve":
        env = {**env, "SSH_ORIGINAL_COMMAND": "apps"}
    runs = [
        (value, argv, lambda argv=argv: bed.run(argv, env))
        for value, argv in cases(bed, command, [*HOSTILE.values(), HELP])
    ]
    results = check_batch(bed, command, runs)
    if command == "swarm:init":  # refused for what it was given, not because Docker is out of reach here
        assert not [result for result in results if b"Docker daemon" in result.stderr]


@pytest.mark.parametrize("command", sorted(set(TABLE) - LOCAL_ONLY))
def test_hostile_values_over_ssh_are_refused_in_one_line(bed, command):
    """`ssh deploy@host COMMAND …` with a hostile name (the request line sshd hands over): the same."""
    env = bed.env(command)
    runs = [
        (value, argv, lambda argv=argv: bed.over_ssh(shlex.join(argv), env))
        for value, argv in cases(bed, command, [HOSTILE[name] for name in OVER_SSH])
    ]
    check_batch(bed, command, runs)


@pytest.mark.parametrize(
    "request_",
    [
        "a\nb",
        NON_UTF8,
        "a" * 10240,
        "status {A}\nrm -rf /",
        f"status {NON_UTF8}",
        "status '{A}",
        "git-receive-pack '{A}.git\n'",
        f"git-upload-pack '{NON_UTF8}.git'",
        "git-receive-pack '" + "a" * 10240 + ".git'",
        "help " + "a" * 10240,
        f"help {NON_UTF8}",
    ],
    ids=lambda request: repr(request[:24]),
)
def test_hostile_request_lines_over_ssh(bed, request_):
    """A request line that is no command, or names no app, is refused in one line."""
    request = request_.replace("{A}", bed.bare)
    before = snapshot(bed)
    result = bed.over_ssh(request, bed.server.env)
    assert not crashed(result) and result.returncode != 0 and one_error_line(result), shown(result)
    assert not differences(before, snapshot(bed))


@pytest.mark.parametrize("template", FREE_TEXT, ids=lambda template: template[0])
def test_free_text_never_crashes(bed, template):
    """A config value, a lock's reason, `run`'s command: anything goes in, and either is taken
    or refused in one line; never a traceback."""
    try:
        for value in [*HOSTILE.values(), HELP]:
            argv = bed.words(template, value)
            for result in (bed.run(argv, bed.server.env), bed.over_ssh(shlex.join(argv), bed.server.env)):
                assert not crashed(result), f"{argv!r}\n{shown(result)}"
                assert result.returncode == 0 or one_error_line(result), f"{argv!r}\n{shown(result)}"
    finally:
        bed.run(["config:unset", bed.bare, "--no-deploy", "K"], bed.server.env)
        bed.run(["unlock", bed.bare], bed.server.env)
