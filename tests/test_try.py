"""scripts/try.sh: one command gives a throwaway server with examples/hello live on this machine's loopback,
and `--down` removes it all (tests/support/server_bed.py's bed, kept between the two commands)."""

from __future__ import annotations

import subprocess
import urllib.request

import pytest
from support.middock import ROOT
from support.ports import free_port
from support.server_bed import TRY_NAME

pytestmark = [pytest.mark.bed, pytest.mark.slow, pytest.mark.xdist_group("try-bed")]

TRY = str(ROOT / "scripts" / "try.sh")


def leftovers() -> list[str]:
    """try.sh's container and volume, if any remain."""
    containers = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"name=^{TRY_NAME}$"], capture_output=True, text=True, check=True
    ).stdout.split()
    volumes = subprocess.run(
        ["docker", "volume", "ls", "-q", "--filter", f"name=^{TRY_NAME}-docker$"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return containers + volumes


def test_try_serves_the_page_on_loopback_then_down_removes_it() -> None:
    if leftovers():
        pytest.skip(f"a try.sh server ({TRY_NAME}) is up on this machine; not touching it")
    port = free_port()
    try:
        up = subprocess.run([TRY, "--port", str(port)], capture_output=True, text=True, timeout=1200)
        print(up.stderr[-3000:])
        assert up.returncode == 0, up.stdout + up.stderr
        url = up.stdout.strip().splitlines()[-1]
        assert url == f"http://127.0.0.1:{port}/", up.stdout
        with urllib.request.urlopen(url, timeout=10) as response:
            assert "Hello from middock" in response.read().decode()
        container = subprocess.run(
            ["docker", "inspect", "--format", "{{.Id}}", TRY_NAME], capture_output=True, text=True, check=True
        ).stdout.strip()
    finally:
        down = subprocess.run([TRY, "--down"], capture_output=True, text=True, timeout=300)
    assert down.returncode == 0, down.stdout + down.stderr
    assert leftovers() == []
    cgroups = subprocess.run(
        ["find", "/sys/fs/cgroup", "-maxdepth", "3", "-name", container], capture_output=True, text=True
    ).stdout
    assert cgroups == "", f"cgroup folders of {TRY_NAME} left behind:\n{cgroups}"
