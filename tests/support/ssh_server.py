"""The server side of the SSH tests: install.sh run for real, a real sshd on a loopback port, and
an ssh client with generated keys. Needs root (it creates a user), as the whole suite does."""

from __future__ import annotations

import shlex
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from support.middock import ROOT
from support.ports import free_port
from support.rootless import end_processes


def world_readable_dir(prefix: str) -> Path:
    """A temp folder the deploy user can reach (mkdtemp makes 0700 folders)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    return path


def unique_user() -> str:
    return f"mdk-{uuid.uuid4().hex[:8]}"


def make_key(folder: Path, name: str) -> Path:
    """A fresh ed25519 key pair; returns the private key's path (the public one is beside it)."""
    path = folder / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(path)], check=True)
    return path


def sshd_settings(prefix: Path) -> Path:
    """Where install.sh, run by a test, writes its sshd setting (the deploy user's keys file is
    root's): never the machine's /etc/ssh, whose sshd it would reload. `Sshd(…, include=…)` reads it."""
    return prefix / "sshd_config.d"


def run_install(
    user: str, prefix: Path, *options: str, source: Path = ROOT, env: dict | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess:
    """`install.sh` as a user runs it, into `prefix` (venv and bin) instead of /opt and /usr/local."""
    argv = [str(source / "install.sh"), "--user", user, "--prefix", str(prefix / "venv")]
    argv += ["--bin-dir", str(prefix / "bin"), "--sshd-config-dir", str(sshd_settings(prefix)), *options]
    return subprocess.run(argv, capture_output=True, text=True, timeout=600, env=env, cwd=cwd)


def as_user(user: str, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(["runuser", "-u", user, "--", *argv], capture_output=True, text=True, timeout=300, cwd="/")
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} exited {result.returncode}:\n{result.stdout}{result.stderr}")
    return result


def remove_user(user: str) -> None:
    """The user, its processes (its rootless Docker daemon and containers), its home, and root's
    keys file of it (install.sh's)."""
    try:
        end_processes(user)
    except KeyError:  # no such user (any more)
        pass
    subprocess.run(["userdel", "--force", "--remove", user], capture_output=True)
    (Path("/etc/middock/authorized_keys") / user).unlink(missing_ok=True)
    for log in Path("/var/log/middock").glob(f"audit-{user}.log*"):  # install.sh's, append-only
        subprocess.run(["chattr", "-a", str(log)], capture_output=True)
        log.unlink(missing_ok=True)


class Sshd:
    """sshd as root on a free loopback port, with its own config and host key, letting in one
    user; `include`: install.sh's sshd settings (sshd_settings), so the user's keys are root's file."""

    def __init__(self, folder: Path, user: str, *extra_config: str, include: Path | None = None) -> None:
        self.folder = folder
        self.port = free_port()
        folder.mkdir(exist_ok=True)
        host_key = folder / "host_ed25519"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(host_key)], check=True)
        self.known_hosts = folder / "known_hosts"
        public = (folder / "host_ed25519.pub").read_text().split()
        self.known_hosts.write_text(f"[127.0.0.1]:{self.port} {public[0]} {public[1]}\n")
        config = folder / "sshd_config"
        lines = [
            f"Port {self.port}",
            "ListenAddress 127.0.0.1",
            f"HostKey {host_key}",
            f"PidFile {folder / 'sshd.pid'}",
            "AuthorizedKeysFile .ssh/authorized_keys",
            "UsePAM no",
            "KbdInteractiveAuthentication no",
            "PermitRootLogin no",
            f"AllowUsers {user}",
            "LogLevel VERBOSE",
            "Subsystem sftp internal-sftp",
            *extra_config,
            *([f"Include {include}/*.conf"] if include else []),
        ]
        if not any(line.startswith("PasswordAuthentication") for line in extra_config):
            lines.append("PasswordAuthentication no")
        config.write_text("\n".join(lines) + "\n")
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        self.log = open(folder / "sshd.log", "wb")
        self.process = subprocess.Popen(
            ["/usr/sbin/sshd", "-D", "-e", "-f", str(config)], stdout=self.log, stderr=subprocess.STDOUT
        )
        self.wait_listening()

    def wait_listening(self, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            probe = subprocess.run(["ssh-keyscan", "-p", str(self.port), "127.0.0.1"], capture_output=True, timeout=10)
            if probe.stdout:
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f"sshd did not start:\n{(self.folder / 'sshd.log').read_text()}")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)
        self.log.close()


class SshClient:
    """`ssh` with one key, this sshd's host key pinned, nothing from root's own ssh config."""

    def __init__(self, sshd: Sshd, user: str, key: Path) -> None:
        self.sshd, self.user, self.key = sshd, user, key
        self.options = [
            "-F",
            "/dev/null",
            "-i",
            str(key),
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            f"UserKnownHostsFile={sshd.known_hosts}",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
        ]
        self.base = ["ssh", *self.options]

    @property
    def destination(self) -> str:
        return f"{self.user}@127.0.0.1"

    @property
    def git_ssh_command(self) -> str:
        """For GIT_SSH_COMMAND (a shell string: every part quoted)."""
        return shlex.join(self.base)

    def url(self, path: str) -> str:
        return f"ssh://{self.destination}:{self.sshd.port}/{path}"

    def argv(self, *args: str, options: tuple[str, ...] = ()) -> list[str]:
        return [*self.base, "-p", str(self.sshd.port), *options, self.destination, *args]

    def run(self, *args: str, options: tuple[str, ...] = (), timeout: float = 300) -> subprocess.CompletedProcess:
        """`ssh user@127.0.0.1 ARGS…`: ssh joins ARGS with spaces into the request, as it always does."""
        return subprocess.run(
            self.argv(*args, options=options),
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
