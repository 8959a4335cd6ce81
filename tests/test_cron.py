"""Scheduled jobs (middock.cron) end to end: real pushes, the real cron daemon and crontab, one-off
containers on a real Docker Engine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support.apps import write_busybox_app
from support.ports import free_port
from support.web import http_get

from middock_receiver.jobs import cronfile, crontab
from middock_receiver.jobs import runs as runs_record
from middock_receiver.jobs.suspension import Suspension
from middock_receiver.state.apps import App

# Its tests share the cron daemon its autouse fixture starts: one worker runs them all.
pytestmark = [pytest.mark.docker, pytest.mark.xdist_group("cron")]

CRON = """# the app's jobs
tick   * * * * *   worker  sh -c 'echo tick from $HOSTNAME'
slow   @daily      worker  sh -c 'echo started; sleep 6; echo done'
fail   0 3 * jan-mar mon-fri  worker  sh -c 'echo failing; exit 3'
"""


@pytest.fixture(scope="module", autouse=True)
def cron_daemon():
    """The server's cron daemon, started here where it does not run. The tests touch only their
    own homes' blocks of this user's crontab (and a line of their own, under middock's crontab
    lock), so other tests writing theirs meanwhile lose nothing."""
    started = None
    # A cron of this machine, not one in a container (a server bed's) that the host sees too.
    this_machine = ["--ns", str(os.getpid()), "--nslist", "mnt,pid"]
    if subprocess.run(["pgrep", "-x", "cron", *this_machine], capture_output=True).returncode != 0:
        started = subprocess.Popen(["cron", "-f"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    yield
    if started:
        started.terminate()
        started.wait(10)


def edit_crontab(change) -> None:  # noqa: ANN001
    """Rewrite this user's crontab as middock does: under its lock, so no concurrent rewrite is lost."""
    with crontab.locked():
        crontab.write(change(crontab.read()))


@pytest.fixture
def foreign(tmp_path) -> str:
    """Lines middock did not write (an admin's own), in this user's crontab while the test runs."""
    lines = f"# the admin's own\n17 4 * * 1 /usr/local/bin/backup --quiet  # weekly %s {tmp_path}\n"
    edit_crontab(lambda text: text + lines)
    yield lines
    edit_crontab(lambda text: text.replace(lines, ""))


def current_crontab() -> str:
    result = subprocess.run(["crontab", "-l"], capture_output=True, text=True)
    return result.stdout if result.returncode == 0 else ""


def block(server, app: str) -> list[str]:
    """The job names of the app's crontab lines."""
    begin, end = crontab.marks(server.home, app)
    text = current_crontab()
    if begin not in text:
        return []
    lines = text.split(begin + "\n", 1)[1].split(end, 1)[0].splitlines()
    return [line.split("cron:run ", 1)[1].split()[1] for line in lines]


def deploy_with_jobs(work, port: int, jobs: str = CRON, page: str = "v1") -> subprocess.CompletedProcess:
    write_busybox_app(work, port, page)
    work.write("middock.cron", jobs)
    work.commit(page)
    return work.push()


def runs(server, app: str, job: str | None = None) -> list[dict]:
    return json.loads(server.middock("cron:runs", app, *([job] if job else []), "--json").stdout)


@pytest.mark.slow
def test_a_job_fires_by_itself_and_its_lines_leave_other_lines_alone(server, work, app, tmp_path, foreign, request):
    """The crontab holds one line a job, written when the release goes live; the cron daemon
    runs `* * * * *` by itself; lines middock did not write, and another home's, stay byte for
    byte; apps:destroy takes the app's lines away."""
    other_home = tmp_path / "other"
    other = [cronfile.Job("nightly", "@daily", "0 0 * * *", "app", ["true"], 1)]
    crontab.install(other_home, "elsewhere", other, Suspension())
    request.addfinalizer(lambda: crontab.install(other_home, "elsewhere", [], Suspension()))

    result = deploy_with_jobs(work, free_port())
    assert "scheduled jobs: tick, slow, fail" in result.stderr, result.stderr
    assert block(server, app) == ["tick", "slow", "fail"]
    listed = json.loads(server.middock("cron", app, "--json").stdout)
    assert [row["name"] for row in listed] == ["tick", "slow", "fail"]
    assert listed[2]["schedule"] == "0 3 * jan-mar mon-fri" and listed[2]["next_run"]
    status = server.middock("status", app).stdout
    assert "Job:          tick" in status and "next " in status, status

    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and not [r for r in runs(server, app, "tick") if r["result"] != "running"]:
        time.sleep(2)
    fired = runs(server, app, "tick")
    assert fired and fired[0]["trigger"] == "schedule" and fired[0]["result"] == "succeeded", fired
    assert server.middock("cron:output", app, "tick").stdout.startswith("tick from ")

    server.middock("apps:destroy", app, "--force")
    text = current_crontab()
    assert block(server, app) == [] and foreign in text
    begin, end = crontab.marks(other_home, "elsewhere")
    assert begin in text and end in text
    crontab.install(other_home, "elsewhere", [], Suspension())
    assert foreign in current_crontab() and begin not in current_crontab()


def test_never_twice_at_once_and_a_deploy_leaves_a_running_job_alone(server, work, app):
    port = free_port()
    deploy_with_jobs(work, port)
    first = subprocess.Popen(
        [sys.executable, "-m", "middock_receiver", "cron:run", app, "slow"],
        env=server.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not runs(server, app, "slow"):
        time.sleep(0.2)
    second = server.middock("cron:run", app, "slow", check=False)
    assert second.returncode != 0 and "is still running" in second.stderr and "skipped" in second.stderr

    pushed = deploy_with_jobs(work, port, page="v2")  # a deploy while the job runs
    assert "is live" in pushed.stderr and http_get(port) == "v2"
    out, _ = first.communicate(timeout=60)
    assert first.returncode == 0 and out.splitlines() == ["started", "done"], out
    results = [(r["trigger"], r["result"]) for r in runs(server, app, "slow")]
    assert sorted(results) == [("cron:run", "skipped"), ("cron:run", "succeeded")], results

    failed = server.middock("cron:run", app, "fail", check=False)
    assert failed.returncode == 3 and failed.stdout == "failing\n"
    assert runs(server, app, "fail")[-1]["exit_code"] == 3
    assert server.middock("cron:output", app, "fail", "1").stdout == "failing\n"


def test_jobs_follow_the_live_release_and_bad_lines_fail_the_push(server, work, app):
    port = free_port()
    deploy_with_jobs(work, port)
    deploy_with_jobs(work, port, CRON.replace("slow", "# slow"), page="v2")
    assert block(server, app) == ["tick", "fail"]
    server.middock("rollback", app)
    assert block(server, app) == ["tick", "slow", "fail"]  # the release's own jobs came back

    for bad, why in [
        ("tick 61 * * * * worker true\n", "middock.cron line 1: minute"),
        ("# first\n\nboot @reboot worker true\n", "middock.cron line 3: @reboot"),
        ("tick * * * * * database true\n", "middock.cron line 1: unknown service 'database'"),
        ("tick @hourly worker true\ntick @daily worker true\n", "middock.cron line 2: job 'tick' is already on line 1"),
        ("Tick @hourly worker true\n", "middock.cron line 1: invalid job name 'Tick'"),
        ("tick @hourly worker\n", "middock.cron line 1: job 'tick' has no command"),
    ]:
        result = deploy_with_jobs(work, port, bad, page="v3")
        errors = [line for line in result.stderr.splitlines() if " !     " in line]
        assert errors and why in errors[0] and "building" not in result.stderr, (bad, result.stderr)
        assert http_get(port) == "v1" and block(server, app) == ["tick", "slow", "fail"]


def test_suspended_jobs_stay_suspended_across_deploys(server, work, app):
    port = free_port()
    deploy_with_jobs(work, port)
    server.middock("cron:suspend", app, "tick")
    assert block(server, app) == ["slow", "fail"]
    deploy_with_jobs(work, port, page="v2")
    assert block(server, app) == ["slow", "fail"]
    listed = {row["name"]: row for row in json.loads(server.middock("cron", app, "--json").stdout)}
    assert listed["tick"]["suspended"] and listed["tick"]["next_run"] is None
    assert server.middock("cron:run", app, "tick").stdout.startswith("tick from ")  # by hand: it runs
    server.middock("cron:suspend", app)
    assert block(server, app) == []
    server.middock("cron:resume", app, "fail")
    assert block(server, app) == ["fail"]
    server.middock("cron:resume", app)
    assert block(server, app) == ["tick", "slow", "fail"]


def test_a_run_past_its_timeout_is_stopped_and_bad_input_is_one_line(server, work, app, docker_client):
    port = free_port()
    write_busybox_app(work, port)
    work.write("middock.cron", "long @daily worker sleep 60\nleak @daily worker echo hunter22-secret\n")
    work.write("middock.env", "MIDDOCK_CRON_TIMEOUT=2\n")
    work.commit("v1")
    server.middock("config:set", app, "TOKEN=hunter22-secret", "--no-deploy")
    work.push()
    assert server.middock("cron:run", app, "leak").stdout == "*****\n"  # masked like all output
    assert server.middock("cron:output", app, "leak").stdout == "*****\n"
    started = time.monotonic()
    result = server.middock("cron:run", app, "long", check=False)
    assert result.returncode != 0 and "MIDDOCK_CRON_TIMEOUT" in result.stdout
    assert time.monotonic() - started < 30
    assert runs(server, app, "long")[-1]["result"] == "timed out"
    assert docker_client.containers.list(all=True, filters={"name": f"{app}-cron-long"}) == []

    for args, why in [
        (("cron:run", app, "nosuch"), f"{app} has no job 'nosuch' (its jobs: long, leak)"),
        (("cron:output", app, "nosuch"), f"{app} has no job 'nosuch'"),
        (("cron:suspend", app, "nosuch"), f"{app} has no job 'nosuch'"),
        (("cron:output", app, "long", "7"), "has no run 7"),
        (("cron", "nosuch-app"), "nosuch-app"),
    ]:
        bad = server.middock(*args, check=False)
        assert bad.returncode != 0 and len(bad.stderr.splitlines()) == 1 and why in bad.stderr, (args, bad.stderr)
    assert runs(server, app, "long")[-1]["result"] == "timed out"  # nothing lost


def test_the_last_runs_are_kept_unit(tmp_path):
    app = App("one", tmp_path)
    for _ in range(runs_record.KEEP + 3):
        run = runs_record.begin(app, "job", "cron:run", 1)
        runs_record.output_path(app, "job", run.number).write_text("out\n")
        runs_record.finish(app, run, runs_record.SUCCEEDED, 0)
    kept = runs_record.history(app, "job")
    assert [run.number for run in kept] == list(range(4, runs_record.KEEP + 4))
    assert len(list(runs_record.folder(app, "job").glob("*.out"))) == runs_record.KEEP


def test_the_cron_file_and_the_crontab_block_unit():
    jobs = cronfile.parse(CRON, {"worker", "web"})
    assert [(j.name, j.fields, j.command, j.line) for j in jobs] == [
        ("tick", "* * * * *", ["sh", "-c", "echo tick from $HOSTNAME"], 2),
        ("slow", "0 0 * * *", ["sh", "-c", "echo started; sleep 6; echo done"], 3),
        ("fail", "0 3 * 1-3 1-5", ["sh", "-c", "echo failing; exit 3"], 4),
    ]
    text = "MAILTO=x\n# middock /a one: begin\nold\n# middock /a one: end\n5 * * * * mine"
    replaced = crontab.with_block(text, Path("/a"), "one", ["new"])
    assert replaced == "MAILTO=x\n5 * * * * mine\n# middock /a one: begin\nnew\n# middock /a one: end\n"
    assert crontab.with_block(replaced, Path("/b"), "one", []) == replaced
    assert crontab.with_block(replaced, Path("/a"), "one", []) == "MAILTO=x\n5 * * * * mine\n"
    line = crontab.job_line(Path("/home/d 100%"), "one", jobs[0])
    assert line.startswith("* * * * * env ") and "'MIDDOCK_HOME=/home/d 100\\%'" in line
