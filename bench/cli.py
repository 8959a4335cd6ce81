"""The command line's own cost, printed as `name: value` lines (seconds: 3 decimals).

On a deploy user made by install.sh (its venv on the distribution's python3, its own rootless
daemon, keys served by a real sshd on loopback), with one app live (the tests' busybox web app
and its worker):

- locally, as the deploy user: `middock status APP`, `releases APP`, `config APP`, `apps` and
  `version`, each a whole process, median of --runs; next to them what a user types by hand for
  the same look, `docker ps --filter label=…` on the same daemon, and the interpreter's own start
  (`python3 -c pass`, the floor of any command written in Python). Target: `status` under 0.1 s.
- what `status` imports: the sum of `python3 -X importtime`'s top-level entries, in ms.
- over SSH: `ssh deploy@127.0.0.1 status APP` (the key's forced command), against the same
  look by hand through the same kind of connection (`ssh deploy@127.0.0.1 docker ps --filter …`
  with a key that runs what it is given, served by a second sshd that reads the user's own keys).

Everything it makes (the user, its daemon and apps, both sshds, the folders) is removed afterwards.

    python3 bench/cli.py [--runs N]
"""

from __future__ import annotations

import argparse
import os
import pwd
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import docker

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from support.apps import write_web_app  # noqa: E402
from support.deployment import Deployment  # noqa: E402
from support.images import BUSYBOX_IMAGE, ensure_busybox_image  # noqa: E402
from support.middock import Workdir  # noqa: E402
from support.rootless import load_image, socket_path  # noqa: E402
from support.ssh_server import SshClient, Sshd, make_key, unique_user, world_readable_dir  # noqa: E402

TOP_LEVEL_IMPORT = re.compile(r"^import time:\s+\d+ \|\s+(\d+) \| (\S+)$")  # not indented: not nested


def checked(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(result.args)} exited {result.returncode}:\n{result.stdout}{result.stderr}")
    return result


class AsUser:
    """Processes as the deploy user, started straight (no runuser or su between: only what is timed)."""

    def __init__(self, user: str) -> None:
        entry = pwd.getpwnam(user)
        self.uid, self.gid, self.home = entry.pw_uid, entry.pw_gid, entry.pw_dir
        self.env = {"HOME": self.home, "PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}

    def run(self, argv: Sequence[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        result = subprocess.run(
            argv, user=self.uid, group=self.gid, extra_groups=[], env={**self.env, **(env or {})},
            cwd=self.home, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        return checked(result)


def median_time(run: callable, runs: int) -> float:  # noqa: ANN001 - any callable of no argument
    run()  # once first: the page cache holds what the command reads, as it does on a server in use
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        run()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def import_ms(user: AsUser, python: str, argv: list[str]) -> float:
    """What the command imports, in ms: the sum of -X importtime's top-level entries."""
    report = user.run([python, "-X", "importtime", *argv]).stderr
    return sum(int(m.group(1)) for line in report.splitlines() if (m := TOP_LEVEL_IMPORT.match(line))) / 1000


def plain_ssh(deployment: Deployment, base: Path) -> SshClient:
    """A key of the deploy user's own ~/.ssh/authorized_keys, served by an sshd that reads only
    that file: it runs whatever it is given, as an account's ordinary key does."""
    key = make_key(base, "by-hand")
    ssh_dir = Path(pwd.getpwnam(deployment.user).pw_dir) / ".ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    (ssh_dir / "authorized_keys").write_text(key.with_suffix(".pub").read_text())
    subprocess.run(["chown", "-R", f"{deployment.user}:", str(ssh_dir)], check=True)
    return SshClient(Sshd(base / "sshd-by-hand", deployment.user), deployment.user, key)


def live_app(deployment: Deployment, base: Path) -> str:
    """An app of the deploy user with one release live, pushed by alice over SSH."""
    load_image(deployment.user, BUSYBOX_IMAGE)
    app = deployment.new_app()
    work = Workdir(base / "work")
    work.env["GIT_SSH_COMMAND"] = deployment.alice.git_ssh_command
    work.git("remote", "add", "production", deployment.alice.url(f"{app}.git"))
    write_web_app(work, "v1")
    work.commit("v1")
    pushed = work.push()
    if "is live" not in pushed.stderr:
        raise SystemExit(f"the first push failed:\n{pushed.stderr}")
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    ensure_busybox_image(docker.from_env(version="auto"))
    base = world_readable_dir("mbcli-")
    deployment = Deployment(base, unique_user())
    by_hand_sshd: Sshd | None = None
    try:
        deployment.start()
        app = live_app(deployment, base)
        user = AsUser(deployment.user)
        middock, python = deployment.middock, str(base / "venv" / "bin" / "python3")
        own_daemon = {"DOCKER_HOST": f"unix://{socket_path(user.uid)}"}
        docker_ps = ["docker", "ps", "--all", "--filter", f"label=com.docker.compose.project={app}"]

        for words in (["status", app], ["releases", app], ["config", app], ["apps"], ["version"]):
            name = "_".join(word for word in words if word != app)
            seconds = median_time(lambda w=words: user.run([middock, *w]), args.runs)
            print(f"local_{name}_s: {seconds:.3f}")
        print(f"local_docker_ps_by_hand_s: {median_time(lambda: user.run(docker_ps, own_daemon), args.runs):.3f}")
        print(f"local_python_start_s: {median_time(lambda: user.run([python, '-c', 'pass']), args.runs):.3f}")
        print(f"status_imports_ms: {import_ms(user, python, ['-m', 'middock_receiver', 'status', app]):.1f}")

        by_hand = plain_ssh(deployment, base)
        by_hand_sshd = by_hand.sshd
        remote_ps = ["env", *(f"{k}={v}" for k, v in own_daemon.items()), *docker_ps]
        ssh_status = median_time(lambda: checked(deployment.alice.run("status", app)), args.runs)
        ssh_by_hand = median_time(lambda: checked(by_hand.run(*remote_ps)), args.runs)
        print(f"ssh_status_s: {ssh_status:.3f}")
        print(f"ssh_docker_ps_by_hand_s: {ssh_by_hand:.3f}")
        print(f"ssh_status_ratio: {ssh_status / ssh_by_hand:.2f}")
    finally:
        if by_hand_sshd:
            by_hand_sshd.stop()
        deployment.cleanup()


if __name__ == "__main__":
    os.umask(0o022)
    main()
