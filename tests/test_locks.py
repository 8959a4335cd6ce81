"""Locks and sockets where only their owner can create them. Another local account (a throwaway
user made here) can neither take the name of middock's machine-wide lock or of a deploy user's
sockets folder first, nor open the lock to hold it; a lock held too long fails in one line that
names the process holding it; the crontab lock is in the user's own home."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from support.install import owned_by_root
from support.middock import ROOT, one_line
from support.ssh_server import as_user, remove_user, unique_user, world_readable_dir

from middock_receiver import flock
from middock_receiver.errors import MiddockError
from middock_receiver.runtime import networks
from middock_receiver.server import machine

SYSTEM_PYTHON = "/usr/bin/python3"  # one every account may run (the suite's own may be in root's home)
HOLD = "import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDONLY); fcntl.flock(fd, fcntl.LOCK_EX); "
HOLD += "print('held', flush=True); time.sleep(60)"


class Account:
    """A throwaway unprivileged account with a home of its own, in no group of middock's."""

    def __init__(self) -> None:
        self.name = unique_user()
        self.base = world_readable_dir("middock-locks-")
        self.home = self.base / "home"
        subprocess.run(
            ["useradd", "--system", "--home-dir", str(self.home), "--create-home", "--shell", "/bin/sh", self.name],
            check=True,
        )
        self.uid, self.gid = self.home.stat().st_uid, self.home.stat().st_gid
        shutil.rmtree(machine.RUN / str(self.uid), ignore_errors=True)  # a deleted account's, of the same uid

    def python(self, code: str, *args: str) -> subprocess.CompletedProcess:
        """Python code run as the account with this middock, a MiddockError printed as middock prints one."""
        prelude = f"import sys\nsys.path.insert(0, {str(ROOT)!r})\nfrom middock_receiver.errors import MiddockError\n"
        body = "try:\n" + textwrap.indent(textwrap.dedent(code), "    ")
        body += "\nexcept MiddockError as error:\n    sys.exit(f' !     {error}')\n"
        argv = ["runuser", "-u", self.name, "--", SYSTEM_PYTHON, "-c", prelude + body, *args]
        return subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd="/")

    def run(self, *argv: str) -> subprocess.CompletedProcess:
        return as_user(self.name, *argv, check=False)

    def remove(self) -> None:
        shutil.rmtree(machine.RUN / str(self.uid), ignore_errors=True)
        remove_user(self.name)
        shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture
def account():
    if not Path(SYSTEM_PYTHON).exists():
        pytest.skip(f"needs {SYSTEM_PYTHON}")
    made = Account()
    try:
        yield made
    finally:
        made.remove()


@pytest.fixture
def holder():
    """Hold the flock of a file from another process of root's until the test ends."""
    started: list[subprocess.Popen] = []

    def hold(path: Path, *extra: str) -> subprocess.Popen:
        process = subprocess.Popen([sys.executable, "-c", HOLD, str(path), *extra], stdout=subprocess.PIPE, text=True)
        started.append(process)
        assert process.stdout.readline() == "held\n"
        return process

    yield hold
    for process in started:
        process.kill()
        process.wait()


# --- the pure parts ----------------------------------------------------------------------------------------------


def test_the_holder_of_a_lock_is_read_from_proc_locks():
    locks = (
        "1: POSIX  ADVISORY  WRITE 700 08:01:42 0 EOF\n"
        "2: FLOCK  ADVISORY  WRITE 1234 fe:01:42 0 EOF\n"
        "2: -> FLOCK  ADVISORY  WRITE 1300 fe:01:42 0 EOF\n"
        "3: FLOCK  ADVISORY  READ  1400 00:1a:42 0 EOF\n"
        "4: FLOCK  ADVISORY  READ  1500 00:1a:42 0 EOF\n"
        "5: FLOCK  ADVISORY  WRITE -1 00:1a:43 0 EOF\n"
        "6: OFDLCK ADVISORY  READ -1 00:06:3 0 EOF\n"
    )
    assert flock.flock_holders(locks, os.makedev(0xFE, 1), 42) == [1234]  # a waiter (->) holds nothing
    assert flock.flock_holders(locks, os.makedev(0, 0x1A), 42) == [1400, 1500]  # shared holders
    assert flock.flock_holders(locks, os.makedev(8, 1), 42) == []  # a POSIX lock is not an flock
    assert flock.flock_holders(locks, os.makedev(0, 0x1A), 43) == []  # a pid of another namespace


def test_a_holders_command_line_is_shown_as_one_short_printable_line():
    assert flock.printable("middock deploy shop") == "middock deploy shop"
    assert flock.printable("a\nb\x1b[31mc\td") == "a?b?[31mc?d"
    shown = flock.printable("x" * 500)
    assert len(shown) == flock.COMMAND_MAX and shown.endswith("…")


def stat_result(mode: int, uid: int) -> os.stat_result:
    return os.stat_result((mode, 1, 1, 1, uid, uid, 0, 0, 0, 0))


def test_only_a_file_of_the_right_kind_owner_and_mode_is_trusted():
    folder, lock = stat.S_IFDIR, stat.S_IFREG
    assert machine.problem(stat_result(folder | 0o755, 0), 0, folder, 0o022) is None
    assert machine.problem(stat_result(folder | 0o1777, 0), 0, folder, 0o022) == "has mode 1777, open to other accounts"
    assert machine.problem(stat_result(folder | 0o755, 1001), 0, folder, 0o022) == "belongs to uid 1001, not 0"
    assert machine.problem(stat_result(stat.S_IFLNK | 0o777, 0), 0, folder, 0o022) == "is not a folder"
    assert machine.problem(stat_result(lock | 0o640, 0), 0, lock, 0o027) is None
    assert machine.problem(stat_result(lock | 0o644, 0), 0, lock, 0o027) is not None  # anyone could open it
    assert machine.problem(stat_result(folder | 0o700, 1001), 1001, folder, 0o077) is None


# --- as they run -------------------------------------------------------------------------------------------------


def test_a_lock_held_too_long_fails_in_one_line_naming_its_holder(tmp_path, holder):
    """`the network allocation lock … is held by pid N (its command) for more than 60 s: try
    again`: the holder's command line is shown on that one line, whatever bytes it holds."""
    path = tmp_path / "some.lock"
    path.touch()
    process = holder(path, "line one\nline two")
    started = time.monotonic()
    with pytest.raises(MiddockError) as raised, flock.held(path, timeout=0.3, what="the test lock"):
        pass
    waited = time.monotonic() - started
    message = str(raised.value)
    assert message.startswith(f"the test lock {path} is held by pid {process.pid} ({sys.executable} -c import fcntl")
    assert message.endswith("for more than 0.3 s: try again") and "\n" not in message, message
    assert 0.3 <= waited < 2
    process.kill()
    process.wait()
    with flock.held(path, timeout=0.3) as taken:  # free again once its holder is gone
        assert taken


def test_the_network_lock_is_in_roots_folder_and_no_other_account_can_open_it(account):
    """/run/middock is root's and the lock is root's, open to the group `middock` only: another
    account can create nothing there and cannot open the lock, so it cannot hold it."""
    path = machine.lock(networks.LOCK)  # as root, as the test suite runs: made if missing
    assert path == Path("/run/middock/networks.lock")
    run, lock = os.lstat(machine.RUN), os.lstat(path)
    assert (run.st_uid, stat.S_IMODE(run.st_mode)) == (0, 0o755) and stat.S_ISDIR(run.st_mode)
    assert (lock.st_uid, stat.S_IMODE(lock.st_mode)) == (0, 0o640) and stat.S_ISREG(lock.st_mode)
    assert account.run("touch", str(machine.RUN / "squatted")).returncode != 0
    opened = account.python("open(sys.argv[1])", str(path))
    assert "PermissionError" in opened.stderr, opened.stderr
    taken = account.python("from middock_receiver.server import machine\nmachine.lock('networks.lock')")
    one_line(taken, "only root and the group middock may take this lock")


def test_no_other_account_can_make_the_lock_first_where_middock_will_use_it(account):
    """Before the lock exists (root made the folder, nothing else yet), another account cannot
    create it; middock run by a user says in one line that root makes it; root makes it 0640."""
    base = world_readable_dir("middock-run-")
    try:
        run = base / "middock"
        code = """
            from pathlib import Path
            from middock_receiver.server import machine
            machine.lock("networks.lock", Path(sys.argv[1]))
            """
        one_line(account.python(code, str(run)), f"{run} is missing: run install.sh as root to make it")
        machine.folder(run)
        squat = account.python("import os\nos.open(sys.argv[1], os.O_RDONLY | os.O_CREAT, 0o600)", str(run / "x.lock"))
        assert "PermissionError" in squat.stderr, squat.stderr
        one_line(account.python(code, str(run)), f"{run}/networks.lock is missing: run install.sh as root")
        lock = os.lstat(machine.lock("networks.lock", run))
        assert (lock.st_uid, lock.st_gid, stat.S_IMODE(lock.st_mode)) == (0, machine.group_id(), 0o640)
        # a folder in its place that another account made first (where anyone may create) is refused
        public = base / "public"
        public.mkdir(mode=0o1777)
        public.chmod(0o1777)
        assert account.run("mkdir", "-m", "0755", str(public / "middock")).returncode == 0
        with pytest.raises(MiddockError, match=f"belongs to uid {account.uid}, not 0: remove it"):
            machine.lock("networks.lock", public / "middock")
        assert not (public / "middock" / "networks.lock").exists()
    finally:
        shutil.rmtree(base)


def test_a_deploy_user_takes_the_lock_and_waits_a_bounded_time(account, holder):
    """What install.sh gives a deploy user (the group `middock`) is enough to take the lock; held
    by root's deploy for too long, the user's deploy says which process holds it."""
    if subprocess.run(["getent", "group", machine.GROUP], capture_output=True).returncode != 0:
        subprocess.run(["groupadd", "--system", machine.GROUP], check=True)  # as install.sh does
    subprocess.run(["usermod", "-aG", machine.GROUP, account.name], check=True)
    base = world_readable_dir("middock-run-")
    try:
        run = base / "middock"
        lock = machine.lock("networks.lock", run)
        code = """
            from pathlib import Path
            from middock_receiver import flock
            from middock_receiver.server import machine
            with flock.held(machine.lock("networks.lock", Path(sys.argv[1])), timeout=0.3) as taken:
                print(taken)
            """
        taken = account.python(code, str(run))
        assert taken.returncode == 0 and taken.stdout == "True\n", taken.stderr
        process = holder(lock)
        one_line(account.python(code, str(run)), f"the lock {lock} is held by pid {process.pid} ({sys.executable} -c")
    finally:
        shutil.rmtree(base)


def test_a_held_network_lock_fails_an_allocation_in_one_line(holder):
    """A deploy that cannot allocate its networks within the limit says which process holds the lock."""
    process = holder(machine.lock(networks.LOCK))
    with pytest.raises(MiddockError) as raised, networks.allocating(wait=0.3):
        pass
    assert str(raised.value).startswith(
        f"the network allocation lock /run/middock/networks.lock is held by pid {process.pid} ("
    )


def test_the_crontab_lock_is_in_the_users_own_home(account):
    """`~/.middock/crontab.lock` (folder 0700), whatever MIDDOCK_HOME says; nothing in /tmp; held by
    another process of the user too long, it fails in one line naming that process."""
    code = """
        import os, subprocess
        from middock_receiver.jobs import crontab
        os.environ["MIDDOCK_HOME"] = "/nonexistent"
        with crontab.locked():
            pass
        path = os.path.expanduser("~" + sys.argv[1]) + "/.middock/crontab.lock"
        holder = subprocess.Popen([sys.executable, "-c", sys.argv[2], path], stdout=subprocess.PIPE, text=True)
        holder.stdout.readline()
        crontab.LOCK_WAIT = 0.3
        try:
            with crontab.locked():
                pass
        finally:
            holder.kill()
        """
    result = account.python(code, account.name, HOLD)
    lock = account.home / ".middock" / "crontab.lock"
    one_line(result, f"the crontab lock {lock} is held by pid ")
    assert "for more than 0.3 s: try again" in result.stderr
    assert lock.stat().st_uid == account.uid
    assert stat.S_IMODE((account.home / ".middock").stat().st_mode) == 0o700
    assert not Path(f"/tmp/middock-crontab-{account.uid}.lock").exists()
    assert owned_by_root(account.home) == []


def test_a_long_homes_sockets_go_where_no_other_account_can_make_them(account):
    """The edge of a home whose path is too long for a socket keeps its sockets in the owner's
    /run/middock/UID, which only root makes: missing, one line says so; made by another account,
    it is refused; another account cannot make it first."""
    home = account.home / ("x" * 100)
    account.run("mkdir", str(home))
    code = """
        from pathlib import Path
        from middock_receiver.edge.settings import EdgePaths
        paths = EdgePaths(Path(sys.argv[1]))
        paths.prepare()
        print(paths.run)
        """
    own = machine.RUN / str(account.uid)
    one_line(account.python(code, str(home)), f"{own} is missing: run install.sh as root to make it")
    # another account (here root, for a uid that is not its own) made it first: refused
    own.mkdir(mode=0o755)
    one_line(account.python(code, str(home)), f"{own} belongs to uid 0, not {account.uid}: remove it")
    with pytest.raises(MiddockError, match="belongs to uid 0"):
        machine.user_folder(account.uid, account.gid)  # root's middock does not take it either
    own.rmdir()
    # nor can an account make another's folder
    assert account.run("mkdir", str(machine.RUN / str(account.uid + 100000))).returncode != 0
    machine.user_folder(account.uid, account.gid)  # as install.sh (and root's middock) make it
    made = account.python(code, str(home))
    assert made.returncode == 0, made.stderr
    run = Path(made.stdout.strip())
    assert run.parent == own and len(str(run / "haproxy-master.sock")) < 100
    for folder in (own, run):
        info = os.lstat(folder)
        assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (account.uid, 0o700), folder
    assert owned_by_root(account.home) == []
