"""Rules of the package's layout that docs/ARCHITECTURE.md states, kept by a test."""

from __future__ import annotations

import re
import subprocess
import sys

from support.middock import ROOT

PACKAGE = ROOT / "middock_receiver"
GROUND_FLOOR = {"__init__", "__main__", "errors", "flock", "output", "process", "settings", "waiting"}
FORWARDERS = {"hook"}  # the hooks' old module name, through the 0.3 releases


def test_only_the_ground_floor_and_a_forwarder_are_loose_at_the_top() -> None:
    assert {path.stem for path in PACKAGE.glob("*.py")} == GROUND_FLOOR | FORWARDERS


def test_the_docker_sdk_is_reached_through_runtime_engine_only() -> None:
    """So a command that never talks to Docker starts without loading it."""
    direct = re.compile(r"^\s*(import docker\b|from docker\b)", re.MULTILINE)
    found = [str(path.relative_to(ROOT)) for path in PACKAGE.rglob("*.py") if direct.search(path.read_text())]
    assert found == [], found


def test_the_command_line_starts_without_the_docker_sdk() -> None:
    code = "import sys, middock_receiver.cli, middock_receiver.push.hook; print('docker.api' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert result.stdout == "False\n"
