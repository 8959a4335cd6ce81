"""install.sh run for real: a fresh deploy user from a copy of the source, and what root may own."""

from __future__ import annotations

import json
import pwd
import shutil
import subprocess
from pathlib import Path

from support.middock import ROOT
from support.ports import free_port
from support.ssh_server import make_key, run_install, unique_user

SOURCE_IGNORE = shutil.ignore_patterns(
    ".git", "tests", "bench", "examples", "*.egg-info", "__pycache__", ".*cache", ".benchmarks", "build"
)


def owned_by_root(home: Path) -> list[str]:
    """Every path under the home that root owns (none may be: root acts there as the user)."""
    found = subprocess.run(["find", str(home), "-user", "root"], capture_output=True, text=True, check=True)
    return found.stdout.split()


class Installed:
    """A first install.sh run from a copy of the source, for a fresh user, into a temp prefix.
    The copy sits where an admin puts it: in root's private home (0700, which the deploy user
    cannot enter), in a folder whose name has a space."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.user = unique_user()
        private = base / "root home"
        private.mkdir(mode=0o700)
        self.source = private / "middock src"
        shutil.copytree(ROOT, self.source, ignore=SOURCE_IGNORE)
        self.key = make_key(base, "alice@laptop").with_suffix(".pub")
        self.middock = str(base / "venv" / "bin" / "middock")
        self.first: subprocess.CompletedProcess | None = None
        self.edge_ports = (free_port(), free_port())

    def install(self, *options: str) -> subprocess.CompletedProcess:
        ports = ["--http-port", str(self.edge_ports[0]), "--https-port", str(self.edge_ports[1])]
        result = run_install(
            self.user, self.base, "--key", str(self.key), *ports, *options, source=self.source, cwd=self.source
        )
        assert result.returncode == 0, result.stdout + result.stderr
        return result

    def edge(self) -> dict:
        listed = subprocess.run([self.middock, "edge", "--json", "--user", self.user], capture_output=True, text=True)
        return json.loads(listed.stdout)

    def haproxy_master(self) -> int:
        return int((self.home / ".middock" / "_edge" / "haproxy.pid").read_text().split()[0])

    @property
    def home(self) -> Path:
        return Path(pwd.getpwnam(self.user).pw_dir)
