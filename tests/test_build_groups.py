"""Build scripts side by side, end to end: scripts whose names start with the same number run at
once, their lines prefixed with their names in the pusher's output, and the first of them to fail
stops the others and fails the push while the live release keeps serving."""

from __future__ import annotations

from pathlib import Path

from support.apps import BUILD_WEB, write_busybox_app
from support.middock import Server, Workdir, pusher_lines
from support.ports import free_port
from support.processes import gone
from support.web import http_get

# Appended to a script: it says it is here, then waits (at most 30 s) until its partner is too;
# run one after the other, the first would give up.
MEET = """touch "$MARKS/{me}.here"
echo "{me}: here"
n=0
until [ -e "$MARKS/{partner}.here" ]; do
    n=$((n + 1)); [ "$n" -le 300 ] || {{ echo "{me}: {partner} never ran beside me"; exit 1; }}; sleep 0.1
done
echo "{me}: {partner} runs beside me"
touch "$MARKS/{me}.done"
"""
AFTER_BOTH = """#!/bin/sh
[ -e "$MARKS/api.done" ] && [ -e "$MARKS/web.done" ] || { echo "started before group 1 ended"; exit 1; }
echo "after both"
"""
# Runs until it is killed: writes its pid and its child's, then waits 60 s for the child.
LONG = """#!/bin/sh
echo $$ > "$MARKS/long.pid"
sleep 60 &
echo $! > "$MARKS/long.child"
echo "long: building"
wait
touch "$MARKS/long.finished"
"""
FAILS_SOON = """#!/bin/sh
n=0
until [ -e "$MARKS/long.child" ] || [ "$n" -ge 300 ]; do n=$((n + 1)); sleep 0.1; done
echo "fails: giving up"
exit 3
"""


def marks_dir(server: Server, app: str, tmp_path: Path) -> Path:
    """A folder the app's build scripts write their markers to (`MARKS`, a config var)."""
    marks = tmp_path / "marks"
    marks.mkdir()
    server.middock("config:set", app, f"MARKS={marks}", "--no-deploy")
    return marks


def test_scripts_of_one_number_run_at_once_prefixed_then_the_next_number(server, work: Workdir, app, tmp_path):
    """build-1-api.sh and build-1-web.sh each wait for the other: the push goes live only if they
    ran at once. Their lines show after their names, build-2-after.sh's as they are, after both."""
    marks_dir(server, app, tmp_path)
    port = free_port()
    write_busybox_app(work, port, "v1")
    (work.path / "docker/build-web.sh").unlink()
    work.write("docker/build-1-api.sh", "#!/bin/sh\nset -e\n" + MEET.format(me="api", partner="web"), executable=True)
    work.write("docker/build-1-web.sh", BUILD_WEB + MEET.format(me="web", partner="api"), executable=True)
    work.write("docker/build-2-after.sh", AFTER_BOTH, executable=True)
    work.commit("two builds at once")
    result = work.push()

    assert "is live" in result.stderr, result.stderr
    assert "-----> Running docker/build-1-api.sh, docker/build-1-web.sh side by side" in result.stderr
    assert "       build-1-api.sh | api: web runs beside me" in result.stderr
    assert "       build-1-web.sh | web: api runs beside me" in result.stderr
    assert "       build-1-web.sh | building " in result.stderr  # the image build's own lines too
    shown = pusher_lines(result.stderr)
    assert shown[shown.index("-----> Running docker/build-2-after.sh") + 1] == "       after both"
    assert http_get(port) == "v1"


def test_the_first_failing_script_stops_its_sibling_and_fails_the_push(server, work: Workdir, app, tmp_path):
    """build-1-fails.sh exits 3 while build-1-long.sh still builds: the long one is stopped (its
    process and its children are gone, its last marker never written), the push fails with the
    failing script's name and exit code, and release 1 keeps serving."""
    marks = marks_dir(server, app, tmp_path)
    port = free_port()
    write_busybox_app(work, port, "v1")
    work.commit("v1")
    assert "is live" in work.push().stderr
    work.write("page.html", "v2")
    work.write("docker/build-1-long.sh", LONG, executable=True)
    work.write("docker/build-1-fails.sh", FAILS_SOON, executable=True)
    work.commit("a failing build beside a long one")
    result = work.push()

    assert "-----> Running docker/build-1-fails.sh, docker/build-1-long.sh side by side" in result.stderr
    assert "       build-1-long.sh  | long: building" in result.stderr
    assert "       build-1-fails.sh | fails: giving up" in result.stderr
    assert "       stopped docker/build-1-long.sh: docker/build-1-fails.sh failed" in result.stderr
    assert "Deploy failed: build script docker/build-1-fails.sh failed with exit code 3;" in result.stderr
    assert "Running docker/build-web.sh" not in result.stderr
    for name in ("long.pid", "long.child"):
        assert gone(int((marks / name).read_text())), f"{name}: still running"
    assert not (marks / "long.finished").exists()
    assert http_get(port) == "v1"
    assert server.releases(app)[-1]["result"] == "failed"
