"""The build stage: run the repo's own image-build scripts, in order, streaming their output."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from .. import process, settings
from ..errors import MiddockError
from ..output import Output


def check_script(checkout: Path, script: str, what: str = "build script") -> Path:
    path = (checkout / script).resolve()
    if os.path.commonpath([path, checkout.resolve()]) != str(checkout.resolve()):
        raise MiddockError(f"{what} {script} is outside the repository")
    if not path.is_file():
        raise MiddockError(f"{what} {script} is missing")
    if not os.access(path, os.X_OK):
        raise MiddockError(f"{what} {script} is not executable: git add --chmod=+x {script}")
    return path


def run_scripts(
    scripts: list[str], checkout: Path, env: Mapping[str, str], out: Output, what: str = "build script"
) -> None:
    """Run each script on the host (a build script, or the post-deploy script: `what`)."""
    timeout = settings.env_value(env, "MIDDOCK_BUILD_TIMEOUT")
    paths = [check_script(checkout, script, what) for script in scripts]
    for script, path in zip(scripts, paths, strict=True):
        out.step(f"Running {script}")
        try:
            result = process.stream([str(path)], out.detail, env=env, cwd=checkout, timeout=timeout)
        except OSError as error:  # a bad #! line, a binary for another machine
            raise MiddockError(f"{what} {script} cannot be run: {error.strerror}") from None
        if result.timed_out:
            raise MiddockError(f"{what} {script} did not finish within {timeout:g} seconds (MIDDOCK_BUILD_TIMEOUT)")
        if result.returncode != 0:
            raise MiddockError(f"{what} {script} failed with exit code {result.returncode}")
