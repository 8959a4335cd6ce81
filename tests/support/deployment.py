"""install.sh's deploy user as a server really has it: keys alice (admin) and bob, served by a real
sshd, its containers on its own rootless Docker daemon. One for the test session (`deployment` in
conftest.py): installing a user and starting its daemon is the slow part."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from pathlib import Path

from support.middock import ROOT, Server, Workdir
from support.ports import claim_block, free_port, release
from support.rootless import docker_as
from support.ssh_server import (
    SshClient,
    Sshd,
    as_user,
    make_key,
    remove_user,
    run_install,
    sshd_settings,
)

EXAMPLE = ROOT / "examples" / "hello"


class Deployment:
    """install.sh's deploy user with keys alice and bob, served by a real sshd."""

    def __init__(self, base: Path, user: str) -> None:
        self.base = base
        self.user = user
        self.apps: list[str] = []
        self.ports: list[int] = []
        self.sshd: Sshd | None = None

    def start(self) -> None:
        self.keys = {name: make_key(self.base, name) for name in ("alice", "bob")}
        base = self.base
        self.middock = str(base / "venv" / "bin" / "middock")
        edge = ["--http-port", str(free_port()), "--https-port", str(free_port())]
        installed = run_install(self.user, base, "--key", str(self.keys["alice"].with_suffix(".pub")), *edge)
        assert installed.returncode == 0, installed.stdout + installed.stderr
        # its apps' and slots' ports from blocks of its own, as a test's home has (support/middock.py)
        self.ports = claim_block(Server.APP_PORTS + Server.SLOT_PORTS)
        apps, slots = self.ports[: Server.APP_PORTS], self.ports[Server.APP_PORTS :]
        self.root_middock("edge:set", f"app-ports={apps[0]}-{apps[-1]}", f"slot-ports={slots[0]}-{slots[-1]}")
        self.root_middock("keys:add", "bob", str(self.keys["bob"].with_suffix(".pub")))
        self.sshd = Sshd(base / "sshd", self.user, include=sshd_settings(base))
        self.alice = SshClient(self.sshd, self.user, self.keys["alice"])
        self.bob = SshClient(self.sshd, self.user, self.keys["bob"])

    def root_middock(self, *args: str) -> subprocess.CompletedProcess:
        result = subprocess.run([self.middock, *args, "--user", self.user], capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr
        return result

    def new_app(self, client: SshClient | None = None) -> str:
        name = f"s-{uuid.uuid4().hex[:8]}"
        created = (client or self.alice).run("apps:create", name)
        assert created.returncode == 0, created.stderr
        self.apps.append(name)
        return name

    def push_example(self, app: str, folder: Path) -> tuple[Workdir, subprocess.CompletedProcess]:
        """examples/hello committed in `folder` and pushed over ssh:// to `app` by alice: the work
        tree, with `production` set, and the push."""
        work = Workdir(folder)
        shutil.copytree(EXAMPLE, work.path, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
        work.commit("hello example")
        work.env["GIT_SSH_COMMAND"] = self.alice.git_ssh_command
        work.git("remote", "add", "production", self.alice.url(f"{app}.git"))
        return work, work.push()

    def key(self, name: str, *role: str) -> SshClient:
        """A further key of the deploy user (`role`: keys:add's --role and --apps)."""
        path = make_key(self.base, name)
        self.root_middock("keys:add", name, str(path.with_suffix(".pub")), *role)
        return SshClient(self.sshd, self.user, path)

    def cleanup(self) -> None:
        for app in self.apps:
            as_user(self.user, self.middock, "apps:destroy", app, "--force", check=False)
            docker_as(self.user, "compose", "-p", app, "down", "--timeout", "1")
        if self.sshd:
            self.sshd.stop()
        subprocess.run([self.middock, "edge:stop", "--user", self.user], capture_output=True)
        subprocess.run(["crontab", "-r", "-u", self.user], capture_output=True)  # the example's job
        remove_user(self.user)
        shutil.rmtree(self.base, ignore_errors=True)
        release(self.ports)
