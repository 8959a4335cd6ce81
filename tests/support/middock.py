"""middock as a user runs it: the server's side (a MIDDOCK_HOME and the `middock` command) and the
developer's (a git work tree pushed with the real git client)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

from middock_receiver.edge.settings import EdgePaths, write_settings
from support.ports import claim_block, free_port, release

ROOT = Path(__file__).resolve().parents[2]


GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "Test Author",
    "GIT_AUTHOR_EMAIL": "author@example.com",
    "GIT_COMMITTER_NAME": "Test Author",
    "GIT_COMMITTER_EMAIL": "author@example.com",
}


class Server:
    """middock's side: a MIDDOCK_HOME and the `middock` command run in it. Its apps' ports and
    slots' ports come from blocks of its own (`edge:set app-ports`, `slot-ports`), so homes
    deploying at once on this machine never choose the same free port."""

    APP_PORTS, SLOT_PORTS = 20, 60  # enough for the most apps and web containers a test runs

    def __init__(self, home: Path) -> None:
        self.home = home
        self.env = {**os.environ, "MIDDOCK_HOME": str(home)}
        self.apps: list[str] = []
        home.mkdir(parents=True, exist_ok=True)
        self.ports = claim_block(self.APP_PORTS + self.SLOT_PORTS)
        app_ports, slot_ports = self.ports[: self.APP_PORTS], self.ports[self.APP_PORTS :]
        write_settings(
            EdgePaths(home),
            {
                "app_ports": f"{app_ports[0]}-{app_ports[-1]}",
                "slot_ports": f"{slot_ports[0]}-{slot_ports[-1]}",
            },
        )

    def middock(self, *args: str, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [sys.executable, "-m", "middock_receiver", *args],
            env=self.env,
            input=input,
            capture_output=True,
            text=True,
            timeout=600,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"middock {' '.join(args)} exited {result.returncode}:\n{result.stdout}{result.stderr}"
            )
        return result

    def releases(self, app: str) -> list[dict]:
        """`releases APP --json`: the app's release records, oldest first."""
        return json.loads(self.middock("releases", app, "--json").stdout)

    def wait_idle(self, app: str, timeout: float = 60) -> None:
        """Until the app's last deploy has also retired what it replaced (a command returns once
        its release is live; the old one drains and stops after)."""
        deadline = time.monotonic() + timeout
        while json.loads(self.middock("status", app, "--json").stdout)["state"] == "deploying":
            assert time.monotonic() < deadline, f"{app} is still deploying after {timeout}s"
            time.sleep(0.5)  # each ask is a middock process: asking no faster leaves the cores to the tests

    def create_app(self, prefix: str = "t", *options: str) -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        self.middock("apps:create", name, *options)
        self.apps.append(name)
        return name

    def repo_path(self, app: str) -> Path:
        return self.home / f"{app}.git"

    def start_edge(self, *settings: str) -> tuple[int, int]:
        """Start this home's edge on free ports (and `settings`); returns (http, https) ports."""
        ports = free_port(), free_port()
        self.middock("edge:set", f"http-port={ports[0]}", f"https-port={ports[1]}", *settings)
        self.middock("edge:start")
        self.edge_started = True
        return ports

    def app_port(self, app: str) -> int:
        """The app's own port on the edge."""
        return json.loads((self.home / ".middock" / app / "settings.json").read_text())["port"]

    def cleanup(self) -> None:
        if getattr(self, "edge_started", False):
            self.middock("edge:stop", check=False)
        for app in self.apps:
            if (self.repo_path(app)).exists():
                destroyed = self.middock("apps:destroy", app, "--force", check=False)
                if destroyed.returncode != 0:
                    print(f"cleanup: apps:destroy {app} failed: {destroyed.stderr.strip()}")
            subprocess.run(
                ["docker", "compose", "--project-name", app, "down", "--remove-orphans", "--volumes", "--timeout", "1"],
                capture_output=True,
                cwd=self.home,
            )
            volumes = subprocess.run(  # an app's named volumes outlive it (apps:destroy keeps data), not a test's
                ["docker", "volume", "ls", "-q", "--filter", f"label=com.docker.compose.project={app}"],
                capture_output=True,
                text=True,
            ).stdout.split()
            if volumes:
                subprocess.run(["docker", "volume", "rm", *volumes], capture_output=True)
        release(self.ports)


class Workdir:
    """The developer's side: a git work tree pushed with the real git client."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.env = {**os.environ, **GIT_IDENTITY}
        path.mkdir(parents=True)
        self.git("init", "-q", "-b", "main")

    def git(self, *args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
        result = subprocess.run(
            ["git", *args], cwd=self.path, env=self.env, capture_output=True, text=True, timeout=timeout
        )
        if check and result.returncode != 0:
            raise AssertionError(f"git {' '.join(args)} exited {result.returncode}:\n{result.stdout}{result.stderr}")
        return result

    def write(self, name: str, text: str, executable: bool = False) -> None:
        path = self.path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        path.chmod(0o755 if executable else 0o644)

    def commit(self, message: str) -> str:
        self.git("add", "-A")
        self.git("commit", "-q", "--allow-empty", "-m", message)
        return self.git("rev-parse", "HEAD").stdout.strip()

    def start_push(self, *args: str) -> subprocess.Popen:
        """`git push production …` running on its own, in its own process group (to kill it
        like a vanished pusher); its output, stdout and stderr together, is `communicate()[0]`."""
        return subprocess.Popen(
            ["git", "push", "production", *(args or ("main",))],
            cwd=self.path,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )

    def push(self, *args: str, check: bool = False) -> subprocess.CompletedProcess:
        """`git push production …`; output in .stdout + .stderr as the pusher sees it."""
        return self.git("push", "production", *(args or ("main",)), check=check)


def pusher_lines(output: str) -> list[str]:
    """A push's output as the pusher reads it, a line each, without git's `remote: ` and padding."""
    return [line.removeprefix("remote: ").rstrip() for line in output.splitlines()]


def one_line(result: subprocess.CompletedProcess, says: str) -> None:
    assert result.returncode != 0, result.stdout
    lines = result.stderr.rstrip("\n").splitlines()
    assert len(lines) == 1 and lines[0].startswith(" !     ") and says in lines[0], result.stderr
