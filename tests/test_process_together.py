"""Programs run side by side (a group of build scripts), without Docker: they overlap, each line
arrives whole with its program, and the first failure stops the others' whole process groups."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.processes import gone

from middock_receiver.process import stream_together

# Each one says it started, waits (at most 10 s) until its partner did too, then prints 200 lines.
PARTNER = """set -e
touch "$0.started"
for _ in $(seq 100); do [ -e "$1.started" ] && break; sleep 0.1; done
[ -e "$1.started" ] || { echo "no partner"; exit 9; }
for n in $(seq 200); do echo "$2 line $n of 200"; done
"""
# Writes its own pid and its child's, then waits for the child (30 s) before writing the last marker.
SIBLING = """echo $$ > "$0.pid"
sleep 30 &
echo $! > "$0.child"
echo "sibling running"
wait
touch "$0.finished"
"""


def test_programs_run_at_once_and_each_line_arrives_whole_with_its_program(tmp_path: Path):
    lines: list[tuple[int, str]] = []
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    argvs = [["sh", "-c", PARTNER, a, b, "first"], ["sh", "-c", PARTNER, b, a, "second"]]
    assert stream_together(argvs, lambda index, line: lines.append((index, line))) is None
    assert [line for index, line in lines if index == 0] == [f"first line {n} of 200" for n in range(1, 201)]
    assert [line for index, line in lines if index == 1] == [f"second line {n} of 200" for n in range(1, 201)]


def test_the_first_failure_stops_the_others_and_their_children(tmp_path: Path):
    sibling = str(tmp_path / "sibling")
    failing = f'until [ -e "{sibling}.child" ]; do sleep 0.05; done; echo "giving up"; exit 3'
    lines: list[tuple[int, str]] = []
    failure = stream_together(
        [["sh", "-c", SIBLING, sibling], ["sh", "-c", failing]], lambda index, line: lines.append((index, line))
    )
    assert failure is not None and failure.index == 1 and failure.stopped == (0,)
    assert failure.result is not None and failure.result.returncode == 3 and not failure.result.timed_out
    assert (0, "sibling running") in lines and (1, "giving up") in lines
    for name in ("pid", "child"):
        assert gone(int(Path(f"{sibling}.{name}").read_text())), f"the sibling's {name} still runs"
    assert not Path(f"{sibling}.finished").exists()


def test_a_program_past_its_timeout_fails_as_timed_out_and_its_children_are_killed(tmp_path: Path):
    sibling = str(tmp_path / "sibling")
    failure = stream_together([["sh", "-c", SIBLING, sibling], ["true"]], lambda index, line: None, timeout=1)
    assert failure is not None and failure.index == 0 and failure.stopped == ()
    assert failure.result is not None and failure.result.timed_out
    assert gone(int(Path(f"{sibling}.child").read_text()))
    assert not Path(f"{sibling}.finished").exists()


def test_a_program_that_cannot_start_stops_those_started_before_it(tmp_path: Path):
    sibling = str(tmp_path / "sibling")
    no_interpreter = tmp_path / "no-interpreter"
    no_interpreter.write_text("#!/nonexistent/shell\n")
    no_interpreter.chmod(0o755)
    started = []

    def on_line(index: int, line: str) -> None:
        started.append(line)

    argvs = [["sh", "-c", SIBLING, sibling], [str(no_interpreter)], ["sh", "-c", "echo never"]]
    failure = stream_together(argvs, on_line)
    assert failure is not None and failure.index == 1 and failure.result is None
    assert isinstance(failure.error, FileNotFoundError)
    assert failure.stopped == (0,) and "never" not in started
    assert not Path(f"{sibling}.finished").exists()


def test_when_passing_a_line_on_fails_every_program_is_stopped_and_the_error_raised(tmp_path: Path):
    """A full disk under the deploy's output: no build goes on unread behind the failed deploy."""
    sibling = str(tmp_path / "sibling")

    def on_line(index: int, line: str) -> None:
        if index == 1:
            raise OSError(28, "No space left on device")

    says_a_line = f'until [ -e "{sibling}.child" ]; do sleep 0.05; done; echo x'
    argvs = [["sh", "-c", SIBLING, sibling], ["sh", "-c", says_a_line]]
    with pytest.raises(OSError, match="No space left"):
        stream_together(argvs, on_line)
    assert gone(int(Path(f"{sibling}.child").read_text()))
    assert not Path(f"{sibling}.finished").exists()
