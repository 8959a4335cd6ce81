"""The build stage: run the repo's own image-build scripts, in order, those of a group side by side,
streaming their output."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path, PurePosixPath

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
    groups: Sequence[Sequence[str]],
    checkout: Path,
    env: Mapping[str, str],
    out: Output,
    what: str = "build script",
) -> None:
    """Run the groups of scripts on the host one after the other, the scripts of a group side
    by side (`plan.script_groups`; a build script, or the post-deploy script: `what`)."""
    timeout = settings.env_value(env, "MIDDOCK_BUILD_TIMEOUT")
    paths = [[check_script(checkout, script, what) for script in group] for group in groups]
    for group, group_paths in zip(groups, paths, strict=True):
        if len(group) == 1:
            out.step(f"Running {group[0]}")
        else:
            out.step(f"Running {', '.join(group)} side by side")
        on_line = prefixed(group, out.detail)
        argvs = [[str(path)] for path in group_paths]
        failure = process.stream_together(argvs, on_line, env=env, cwd=checkout, timeout=timeout)
        if failure is not None:
            for index in failure.stopped:
                out.detail(f"stopped {group[index]}: {group[failure.index]} failed")
            raise MiddockError(failed(f"{what} {group[failure.index]}", failure, timeout))


def prefixed(group: Sequence[str], detail: Callable[[str], None]) -> Callable[[int, str], None]:
    """What shows each line of a group's scripts: as it is for a lone script, else after its
    script's file name (its path where two share a name), padded so the lines align."""
    if len(group) == 1:
        return lambda index, line: detail(line)
    names = [PurePosixPath(script).name for script in group]
    if len(set(names)) < len(names):
        names = list(group)
    width = max(map(len, names))
    return lambda index, line: detail(f"{names[index]:<{width}} | {line}")


def failed(script: str, failure: process.Failure, timeout: float) -> str:
    """The one line that says how the script failed."""
    if failure.error is not None:
        return f"{script} cannot be run: {failure.error.strerror}"
    assert failure.result is not None
    if failure.result.timed_out:
        return f"{script} did not finish within {timeout:g} seconds (MIDDOCK_BUILD_TIMEOUT)"
    return f"{script} failed with exit code {failure.result.returncode}"
