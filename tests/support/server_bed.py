"""A real Debian 12 server, with systemd as PID 1, in a container: where the README's Quickstart runs as
it does on a server (install.sh as root, pushes over a real sshd by another user, reboots, power loss).

How it works (the facts behind each choice are in ../shared/SERVER-BED-NOTES.md):

* Image: `middock-test/server`, debootstrap's minbase of bookworm plus systemd, sshd, git and curl, from the
  mirror apt uses, with the machine's apt sources, apt proxy, local CAs (egress may inspect TLS), pip's CA
  bundle and proxy variables copied in, imported with `docker import`. Cached by a hash of that recipe and of
  the copied files (a label of the image), built by one process at a time.
* Boot: every capability this machine's bounding set has (`--privileged` would ask for more), no seccomp or
  AppArmor, the host's cgroup tree, tmpfs /run, systemd's own stop signal, and the server's /var/lib/docker on
  a volume of its own (overlay2 works there). Ready when `systemctl is-system-running` says so.
* Use: everything goes through `docker exec` (`exec()` as root or as another user of the server). No traffic
  is sent from the host to the container's address; `publish` maps a port on the host's 127.0.0.1 only, for
  scripts/try.sh.
* Teardown removes the container, its volume and the empty cgroup folders left by it and by the containers of
  its own Docker (a killed systemd leaves them).

    with ServerBed() as bed:  # or the module fixture of tests/test_server.py
        bed.exec("id")
        bed.exec("git", "push", "production", "main", user="laptop", cwd="/home/laptop/hello")
        seconds = bed.reboot(probe=["curl", "-fsS", "http://localhost:8000/"])

`PYTHONPATH=tests python3 -m support.server_bed up|down` is scripts/try.sh: the Quickstart in a bed that stays up.
Needs root (debootstrap), the docker CLI and a running Docker Engine.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path

from support.debian_rootfs import RECIPE_LABEL, SUITE, apt_mirror, apt_proxy_env, build_image, prune
from support.images import built_once
from support.waiting import wait_for

SERVER_IMAGE = "middock-test/server"
PACKAGES = (
    "systemd",
    "systemd-sysv",
    "dbus",
    "openssh-server",
    "openssh-client",
    "git",
    "ca-certificates",
    "curl",
    "sudo",
    "python3",
    "iproute2",
    "procps",
)
CHANGES = ('CMD ["/sbin/init"]',)
MASKED = ("getty@tty1.service", "console-getty.service")  # no terminal: they would restart forever
# What udev does on a server (the bed has no udev): /dev/net/tun open to every account, which rootless Docker's
# slirp4netns needs; systemd-tmpfiles applies it at every boot, before the deploy user's daemon starts.
TUN = "z /dev/net/tun 0666 root root -\n"
BED_LABEL = "middock-test.server-bed"  # on every bed container; its value is the owning pid, or "" if kept
PREFIX = "mdsrv"
ROOT = Path(__file__).resolve().parents[2]
LOCAL_CAS = Path("/usr/local/share/ca-certificates")
PROXY_VARIABLES = ("http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY")
# Capability numbers, as in linux/capability.h, named as Docker names them.
# fmt: off
CAPABILITIES = (
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID", "SETPCAP",
    "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW", "IPC_LOCK", "IPC_OWNER",
    "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT", "SYS_ADMIN", "SYS_BOOT", "SYS_NICE",
    "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP",
    "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF",
    "CHECKPOINT_RESTORE",
)
# fmt: on
# What a user copies to the server: the source tree without git's folder, the tests, the benchmarks and caches.
NOT_COPIED = {".git", "tests", "bench", "__pycache__", ".pytest_cache", ".ruff_cache", "middock.egg-info", "build"}


class BedError(RuntimeError):
    """The bed could not be built or booted, or a command in it failed."""


# --- the image ---------------------------------------------------------------------------------------------------


def apt_sources() -> list[Path]:
    """The machine's apt source files, in the order apt reads them."""
    etc = Path("/etc/apt")
    files = [etc / "sources.list", *sorted(etc.glob("sources.list.d/*"))]
    return [path for path in files if path.is_file() and path.suffix in (".list", ".sources")]


def apt_settings() -> str:
    """apt's proxy and date-check settings, as an apt.conf fragment (the mirror may be a proxy or a snapshot)."""
    dump = subprocess.run(["apt-config", "dump"], capture_output=True, text=True).stdout
    keep = re.compile(r"^Acquire::(https?|ftp)::Proxy(::\S+)? |^Acquire::Check-(Valid-Until|Date) ")
    return "".join(line + "\n" for line in dump.splitlines() if keep.match(line))


def proxy_environment() -> dict[str, str]:
    """Proxy variables of this process (and apt's proxy for the mirror), for /etc/environment and `exec`."""
    found = {name: os.environ[name] for name in PROXY_VARIABLES if os.environ.get(name)}
    return {**apt_proxy_env(apt_mirror()), **found}


def recipe() -> str:
    """A hash of everything the image is made from: the recipe, the mirror and the files copied in."""
    inputs = [repr((SUITE, PACKAGES, CHANGES, MASKED, TUN, apt_mirror(), apt_settings(), proxy_environment(), 2))]
    for path in [*apt_sources(), *sorted(LOCAL_CAS.glob("*.crt"))]:
        inputs.append(f"{path}\n{path.read_text(errors='replace')}")
    return hashlib.sha256("\0".join(inputs).encode()).hexdigest()[:16]


def image_recipe() -> str | None:
    inspect = subprocess.run(
        ["docker", "image", "inspect", "--format", "{{json .Config.Labels}}", SERVER_IMAGE],
        capture_output=True,
        text=True,
    )
    return (json.loads(inspect.stdout) or {}).get(RECIPE_LABEL) if inspect.returncode == 0 else None


def ensure_server_image() -> str:
    """The image's name, built first (1.5 to 4 minutes) if it is missing or was built from another recipe."""
    wanted = recipe()
    return built_once(SERVER_IMAGE, lambda: image_recipe() == wanted, lambda: build_server_image(wanted))


def build_server_image(wanted: str) -> None:
    if shutil.which("debootstrap") is None:
        raise BedError("building the server image needs debootstrap (apt-get install debootstrap)")
    old = subprocess.run(["docker", "image", "inspect", "--format", "{{.Id}}", SERVER_IMAGE], capture_output=True)
    started = time.monotonic()
    imported = build_image(
        SERVER_IMAGE,
        PACKAGES,
        (*CHANGES, f"LABEL {RECIPE_LABEL}={wanted}"),
        configure_rootfs,
        prefix="middock-server-",
        timeout=1200,
        error=BedError,
    )
    print(f"built {SERVER_IMAGE} in {time.monotonic() - started:.0f}s", file=sys.stderr)
    old_id = old.stdout.decode().strip()
    if old.returncode == 0 and old_id != imported:
        subprocess.run(["docker", "image", "rm", old_id], capture_output=True)  # unless something still uses it


def configure_rootfs(root: Path) -> None:
    """Make the debootstrapped tree ask what this machine asks (mirror, proxy, CAs) and boot in a container."""
    for path in (root / "etc/apt/sources.list.d").glob("*"):
        path.unlink()
    (root / "etc/apt/sources.list").unlink(missing_ok=True)
    for source in apt_sources():
        text = source.read_text()
        shutil.copy(source, root / source.relative_to("/").as_posix())
        # A keyring the sources name that the new system lacks (a third-party repository's).
        for keyring in re.findall(r"signed-by[=:]\s*([^\s\]]+)", text, flags=re.IGNORECASE):
            target = root / keyring.lstrip("/")
            if Path(keyring).is_file() and not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(keyring, target)
    settings = apt_settings()
    if settings:
        (root / "etc/apt/apt.conf.d/01middock-bed").write_text(settings)
    for ca in sorted(LOCAL_CAS.glob("*.crt")):
        (root / "usr/local/share/ca-certificates").mkdir(parents=True, exist_ok=True)
        shutil.copy(ca, root / "usr/local/share/ca-certificates" / ca.name)
    subprocess.run(["chroot", str(root), "update-ca-certificates"], check=True, capture_output=True)
    (root / "etc/pip.conf").write_text("[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n")
    proxies = proxy_environment()
    if proxies:
        with open(root / "etc/environment", "a") as environment:
            environment.writelines(f'{name}="{value}"\n' for name, value in proxies.items())
    (root / "etc/tmpfiles.d/middock-bed-tun.conf").write_text(TUN)
    for unit in MASKED:
        (root / "etc/systemd/system" / unit).unlink(missing_ok=True)
        (root / "etc/systemd/system" / unit).symlink_to("/dev/null")
    prune(root)  # downloaded .debs, apt's lists (install.sh updates them), docs
    (root / "etc/hostname").unlink()  # the container's name is the host name


# --- a bed -------------------------------------------------------------------------------------------------------


def capabilities_to_drop() -> list[str]:
    """Capabilities this machine's own bounding set lacks: Docker cannot grant them, so `ALL` must leave them."""
    status = Path("/proc/self/status").read_text()
    bounding = int(re.search(r"^CapBnd:\s*([0-9a-f]+)", status, flags=re.MULTILINE).group(1), 16)
    return [name for bit, name in enumerate(CAPABILITIES) if not bounding >> bit & 1]


def docker_run_options() -> list[str]:
    """`docker run` options that let systemd boot as PID 1 and run Docker inside."""
    options = ["--cap-add", "ALL"]
    for name in capabilities_to_drop():
        options += ["--cap-drop", name]
    for option in ("seccomp=unconfined", "apparmor=unconfined", "systempaths=unconfined"):
        options += ["--security-opt", option]
    options += ["--cgroupns=host", "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw"]
    options += ["--tmpfs", "/run:rw,exec,mode=755", "--tmpfs", "/run/lock", "-e", "container=docker"]
    options += ["--device", "/dev/net/tun"]  # the deploy user's rootless Docker (slirp4netns)
    options += ["--stop-signal", "SIGRTMIN+3", "--stop-timeout", "90"]
    return options


def _docker(*args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise BedError(f"docker {' '.join(args)} exited {result.returncode}: {result.stderr.strip()}")
    return result


class ServerBed:
    """One Debian 12 server in a container. `name` reattaches to a bed that exists (try.sh's `down`)."""

    def __init__(self, name: str | None = None, publish: Sequence[str] = (), keep: bool = False) -> None:
        self.name = name or f"{PREFIX}-{secrets.token_hex(3)}"
        self.volume = f"{self.name}-docker"
        self.homes = f"{self.name}-home"  # the deploy user's rootless Docker keeps its overlay2 data there
        self.publish = list(publish)  # "127.0.0.1:HOST_PORT:PORT" only: loopback of this machine
        self.owner = "" if keep else str(os.getpid())
        self.environment = proxy_environment()  # given to every command, as /etc/environment gives it to logins
        self.containers: set[str] = set()  # ids of the bed and of its own Docker's containers, for their cgroups

    def __enter__(self) -> ServerBed:
        try:
            self.start()
        except BaseException:
            self.teardown()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.teardown()

    def start(self) -> None:
        """Boot the bed and wait for systemd (the image is built first if needed)."""
        image = ensure_server_image()
        reap_stale_beds()
        for spec in self.publish:
            if not spec.startswith("127.0.0.1:"):
                raise BedError(f"publish only on this machine's loopback (127.0.0.1:…), not {spec}")
        for volume in (self.volume, self.homes):
            _docker("volume", "create", "--label", f"{BED_LABEL}={self.owner}", volume)
        options = ["--name", self.name, "--hostname", self.name, "--label", f"{BED_LABEL}={self.owner}"]
        options += ["-v", f"{self.volume}:/var/lib/docker", "-v", f"{self.homes}:/home"]
        for spec in self.publish:
            options += ["-p", spec]
        _docker("run", "-d", *options, *docker_run_options(), image)
        self.wait_for_systemd()

    def wait_for_systemd(self, timeout: float = 120) -> None:
        """Until systemd has started every unit it starts at boot ("degraded": some failed, still a server)."""
        deadline = time.monotonic() + timeout
        while True:
            state = self.exec("systemctl", "is-system-running", check=False, timeout=10).stdout.strip()
            if state in ("running", "degraded"):
                return
            if time.monotonic() > deadline:
                failed = self.exec("systemctl", "--failed", "--no-legend", check=False, timeout=10).stdout
                raise BedError(f"{self.name}: systemd is '{state}' after {timeout} s; failed units:\n{failed}")
            time.sleep(0.2)

    def exec(
        self,
        *argv: str,
        user: str = "root",
        cwd: str | None = None,
        input: str | bytes | None = None,
        timeout: float = 120,
        check: bool = True,
    ) -> subprocess.CompletedProcess:
        """Run argv in the bed as `user` (in its home unless `cwd`); text output, unless `input` is bytes."""
        result = subprocess.run(
            [*self._docker_exec(user, cwd, stdin=input is not None), *argv],
            input=input,
            capture_output=True,
            text=not isinstance(input, bytes),
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise BedError(f"{' '.join(argv)} (as {user}) exited {result.returncode}:\n{result.stdout}{result.stderr}")
        return result

    def spawn(self, *argv: str, user: str = "root", cwd: str | None = None) -> subprocess.Popen:
        """Start argv in the bed as `user`, as `exec` runs it, without waiting: its stdout is a text pipe."""
        return subprocess.Popen([*self._docker_exec(user, cwd), *argv], stdout=subprocess.PIPE, text=True)

    def _docker_exec(self, user: str, cwd: str | None, stdin: bool = False) -> list[str]:
        """`docker exec` into the bed as `user`, in its home unless `cwd`, with the bed's environment."""
        home = "/root" if user == "root" else f"/home/{user}"
        command = ["docker", "exec", "-u", user, "-w", cwd or home]
        for name, value in self.environment.items():
            command += ["-e", f"{name}={value}"]
        return [*command, *(["-i"] if stdin else []), self.name]

    def reboot(self, probe: Sequence[str] | None = None) -> float | None:
        """A clean reboot: systemd shuts down on the stop signal, then the container starts again."""
        self._note_containers()
        _docker("restart", self.name, timeout=180)
        return self._boot(probe)

    def power_loss(self, probe: Sequence[str] | None = None) -> float | None:
        """Power cut: every process of the server is killed at once, then it starts again."""
        self._note_containers()
        _docker("kill", self.name)
        _docker("start", self.name)
        return self._boot(probe)

    def _boot(self, probe: Sequence[str] | None, timeout: float = 180) -> float | None:
        """Wait for systemd; with a probe (a command run as root until it exits 0, from the start of the boot),
        return the seconds from the container's start to the probe's first success."""
        started = self.started_at()
        answered = None
        deadline = time.monotonic() + timeout
        while probe is not None and answered is None:
            if self.exec(*probe, check=False, timeout=10).returncode == 0:
                answered = time.time() - started
            elif time.monotonic() > deadline:
                raise BedError(f"{self.name}: {' '.join(probe)} did not succeed within {timeout} s of the boot")
            else:
                time.sleep(0.1)
        self.wait_for_systemd()
        return answered

    def started_at(self) -> float:
        """When the container (the server's power) last started, in seconds since the epoch."""
        stamp = _docker("inspect", "--format", "{{.State.StartedAt}}", self.name).stdout.strip()
        whole, _, fraction = stamp.rstrip("Z").partition(".")
        return datetime.fromisoformat(whole + "+00:00").timestamp() + float(f"0.{fraction or 0}")

    def copy_tree(self, source: Path, target: str, user: str, exclude: set[str] = frozenset()) -> None:
        """Copy a folder of this machine to `target` in the bed, owned by `user` (what scp would leave)."""
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            tar.add(source, arcname=Path(target).name, filter=lambda info: _not_excluded(info, exclude))
        parent = str(Path(target).parent)
        self.exec("tar", "-x", "--no-same-owner", "-C", parent, user=user, cwd=parent, input=buffer.getvalue())

    def _note_containers(self) -> None:
        """Remember the bed's id and its Docker's containers: their cgroup folders (on the host's tree, since the
        bed shares it) outlive a killed server, and a container removed after a power loss leaves its folder."""
        found = _docker("inspect", "--format", "{{.Id}}", self.name, check=False)
        self.containers.update(found.stdout.split())
        inner = self.exec("docker", "ps", "-aq", "--no-trunc", check=False, timeout=30)
        if inner.returncode == 0:
            self.containers.update(inner.stdout.split())

    def teardown(self) -> None:
        """Remove the container, its volume and the empty cgroup folders it and its own containers left."""
        self._note_containers()
        _docker("rm", "-f", self.name, check=False)
        _docker("volume", "rm", self.volume, self.homes, check=False)
        remove_cgroups(sorted(self.containers))


def _not_excluded(info: tarfile.TarInfo, exclude: set[str]) -> tarfile.TarInfo | None:
    return None if set(Path(info.name).parts[1:]) & exclude or info.name.endswith(".pyc") else info


def remove_cgroups(container_ids: Sequence[str]) -> None:
    """Remove the empty cgroup folders of these containers (deepest first); rmdir refuses any still in use."""
    for container in container_ids:
        if not re.fullmatch(r"[0-9a-f]{64}", container):
            continue
        for top in Path("/sys/fs/cgroup").glob(f"*/docker/{container}"):
            for folder in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
                try:
                    folder.rmdir()
                except OSError:
                    pass
            try:
                top.rmdir()
            except OSError:
                pass


def _pid_alive(pid: str) -> bool:
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError):
        return True
    return True


def reap_stale_beds() -> list[str]:
    """Tear down the beds whose owning process is gone (a test run that was killed); kept beds stay."""
    listed = _docker("ps", "-a", "--filter", f"label={BED_LABEL}", "--format", "{{.Names}}\t{{.Labels}}")
    reaped = []
    for line in listed.stdout.splitlines():
        name, _, labels = line.partition("\t")
        owner = dict(label.partition("=")[::2] for label in labels.split(",")).get(BED_LABEL, "")
        if owner and not _pid_alive(owner):
            ServerBed(name).teardown()
            reaped.append(name)
    return reaped


# --- the Quickstart ------------------------------------------------------------------------------------------------

LAPTOP = "laptop"  # the client: a user of the server with its own key and git config, pushing to deploy@localhost
EDGE_UNITS = ("middock-haproxy-deploy.service", "middock-caddy-deploy.service")  # the deploy user's edge
UNITS = (*EDGE_UNITS, "middock-dockerd-deploy.service")  # and its own Docker daemon


def add_laptop(bed: ServerBed, user: str = LAPTOP) -> None:
    """The laptop: a user with an SSH key that root accepts (the Quickstart's "reach it as root over SSH")."""
    bed.exec("useradd", "--create-home", "--shell", "/bin/bash", user)
    bed.exec("install", "-d", "-m", "0700", ".ssh", user=user)
    bed.exec("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"{user}@laptop", "-f", ".ssh/id_ed25519", user=user)
    host_key = bed.exec("cat", "/etc/ssh/ssh_host_ed25519_key.pub").stdout.split()
    bed.exec("tee", ".ssh/known_hosts", user=user, input=f"localhost {host_key[0]} {host_key[1]}\n")
    bed.exec("git", "config", "--global", "user.name", "Laptop User", user=user)
    bed.exec("git", "config", "--global", "user.email", f"{user}@example.test", user=user)
    public = bed.exec("cat", ".ssh/id_ed25519.pub", user=user).stdout
    bed.exec("install", "-d", "-m", "0700", "/root/.ssh")
    bed.exec("tee", "-a", "/root/.ssh/authorized_keys", input=public)


def copy_middock(bed: ServerBed, user: str = LAPTOP, source: Path = ROOT) -> None:
    """middock's source tree onto the laptop, then `scp -r middock ~/.ssh/id_ed25519.pub root@SERVER:`.
    The tree is this checkout's work tree, or `source` (another one, e.g. a `git archive` of a release)."""
    bed.copy_tree(source, f"/home/{user}/middock", user, exclude=NOT_COPIED)
    bed.exec("scp", "-q", "-r", "middock", ".ssh/id_ed25519.pub", "root@localhost:", user=user, timeout=120)


def install(bed: ServerBed) -> subprocess.CompletedProcess:
    """On the server, as root: `cd middock && ./install.sh --key ../id_ed25519.pub --compose-from-debian-13`."""
    argv = ["./install.sh", "--key", "../id_ed25519.pub", "--compose-from-debian-13"]
    return bed.exec(*argv, cwd="/root/middock", timeout=900, check=False)


def create_hello(bed: ServerBed, user: str = LAPTOP) -> None:
    """`ssh deploy@SERVER apps:create hello`, and the example as a repository with `production` pointing there."""
    bed.exec("ssh", "deploy@localhost", "apps:create", "hello", user=user)
    bed.exec("cp", "-r", "middock/examples/hello", "hello", user=user)
    hello = f"/home/{user}/hello"
    bed.exec("git", "init", "-q", "-b", "main", user=user, cwd=hello)
    bed.exec("git", "add", "-A", user=user, cwd=hello)
    bed.exec("git", "commit", "-q", "-m", "hello, middock", user=user, cwd=hello)
    bed.exec("git", "remote", "add", "production", "deploy@localhost:hello.git", user=user, cwd=hello)


def push(bed: ServerBed, user: str = LAPTOP) -> subprocess.CompletedProcess:
    """`git push production main` from the laptop's hello; output as the pusher sees it (stderr)."""
    return bed.exec("git", "push", "production", "main", user=user, cwd=f"/home/{user}/hello", timeout=600, check=False)


def live_url(output: str) -> str | None:
    """Where the push's last `----->` line says the app is live."""
    steps = [line for line in output.splitlines() if "----->" in line]
    found = re.search(r"is live at (https?://[^\s,]+)", steps[-1]) if steps else None
    return found.group(1) if found else None


def over_ssh(bed: ServerBed, *words: str, check: bool = True, user: str = LAPTOP) -> subprocess.CompletedProcess:
    """`ssh deploy@SERVER WORDS…` from the laptop."""
    return bed.exec("ssh", "deploy@localhost", *words, user=user, timeout=300, check=check)


def push_greeting(bed: ServerBed, greeting: str, user: str = LAPTOP) -> float:
    """Commit a new GREETING in the laptop's hello and push it, which must go live; returns the push's seconds."""
    hello = f"/home/{user}/hello"
    env = bed.exec("cat", "middock.env", user=user, cwd=hello).stdout
    env = re.sub(r"^GREETING=.*$", f"GREETING={greeting}", env, flags=re.MULTILINE)
    bed.exec("tee", "middock.env", user=user, cwd=hello, input=env)
    bed.exec("git", "commit", "-q", "-am", greeting, user=user, cwd=hello)
    started = time.monotonic()
    pushed = push(bed, user)
    seconds = time.monotonic() - started
    assert pushed.returncode == 0 and live_url(pushed.stderr), pushed.stderr
    return seconds


def page(bed: ServerBed, url: str, *curl_options: str, user: str = LAPTOP) -> str:
    """The page at url, fetched on the server by the laptop user; else `failed: ` and why (a redirect too)."""
    argv = ["curl", "-sS", "--max-time", "10", "--write-out", "\n%{http_code}", *curl_options, url]
    fetched = bed.exec(*argv, user=user, check=False)
    body, _, code = fetched.stdout.rpartition("\n")
    if fetched.returncode != 0:
        return f"failed: curl exit {fetched.returncode}: {fetched.stderr.strip()}"
    return body if code == "200" else f"failed: HTTP {code}: {body[:300]}"


def page_soon(fetch: Callable[[], str], timeout: float = 30) -> str:
    """What fetch returns once it is a page (a proxy just started or given a certificate may take a moment),
    else its last answer."""
    return wait_for(fetch, timeout, interval=0.5, until=lambda answer: not answer.startswith("failed: "), raises=False)


def deploy_docker(bed: ServerBed, *args: str, user: str = "deploy", check: bool = True) -> subprocess.CompletedProcess:
    """`docker ARGS` on the deploy user's own (rootless) daemon, as that user."""
    uid = bed.exec("id", "-u", user).stdout.strip()
    host = f"DOCKER_HOST=unix:///run/middock/{uid}/docker.sock"
    return bed.exec("env", host, "docker", *args, user=user, check=check)


def running(bed: ServerBed) -> list[str]:
    """The units' main processes (edge, the deploy user's daemon) and the running containers of either daemon (an
    upgraded install may keep the root one): what running install.sh again restarts none of."""
    pids = bed.exec("systemctl", "show", "--property", "MainPID", "--value", *UNITS).stdout.split()
    containers = bed.exec("docker", "ps", "--quiet", "--no-trunc").stdout.split()
    return pids + containers + deploy_docker(bed, "ps", "--quiet", "--no-trunc", check=False).stdout.split()


def not_owned_by(bed: ServerBed, user: str = "deploy") -> str:
    """The paths under the user's home that another account (root, say) owns, one a line: none should be. Its
    rootless daemon's data is left out: files of its containers belong to its subordinate ids, never to root."""
    data = f"/home/{user}/.local/share/docker"
    return bed.exec("find", f"/home/{user}", "-path", data, "-prune", "-o", "!", "-user", user, "-print").stdout


class BedLoad:
    """tests/support/load.py, run in the bed by the laptop user with the server's python3, against a port of the
    server's loopback (with `host`, an app's domain on the edge), until `stop()`, or its bounds in time and count
    (the `docker exec` ends with the bed, whatever becomes of the test)."""

    def __init__(
        self,
        bed: ServerBed,
        port: int,
        host: str | None = None,
        max_seconds: float = 600,
        max_requests: int = 1_000_000,
        user: str = LAPTOP,
    ) -> None:
        self.bed, self.user = bed, user
        self.stop_file = f"/home/{user}/load-stop-{secrets.token_hex(3)}"
        bed.exec("tee", "load.py", user=user, input=(Path(__file__).parent / "load.py").read_text())
        argv = ["python3", "load.py", "--port", str(port), "--stop-file", self.stop_file]
        argv += ["--max-seconds", str(max_seconds), "--max-requests", str(max_requests)]
        self.process = bed.spawn(*argv, *(["--host", host] if host else []), user=user)
        started = self.process.stdout.readline()
        if started != "started\n":
            self.process.kill()
            raise BedError(f"the load in {bed.name} did not start: {started!r}")

    def stop(self) -> dict:
        """Stop the clients; their report: total, failures, versions, and `stopped` (false: the bounds ended the
        load before `stop()`, so part of what it was to cover went without)."""
        self.bed.exec("touch", self.stop_file, user=self.user)
        out, _ = self.process.communicate(timeout=120)
        return json.loads(out)


# --- scripts/try.sh ------------------------------------------------------------------------------------------------

TRY_NAME = "middock-try"
TRY_APP_PORT = 8000  # the app's own port on the server's edge, published on this machine's loopback


def _free_port(start: int) -> int:
    for port in range(start, start + 1000):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise BedError(f"no free port from {start}")


def try_up(port: int | None) -> str:
    """Boot a kept bed, install middock, push examples/hello from the laptop user; returns the page's URL here."""
    if _docker("ps", "-a", "-q", "--filter", f"name=^{TRY_NAME}$").stdout.strip():
        raise BedError(f"{TRY_NAME} exists already; remove it first with: scripts/try.sh --down")
    port = port or _free_port(8000)
    bed = ServerBed(TRY_NAME, publish=[f"127.0.0.1:{port}:{TRY_APP_PORT}"], keep=True)
    try:
        step("Booting a Debian 12 server in the container " + TRY_NAME)
        bed.start()
        add_laptop(bed)
        copy_middock(bed)
        step("Installing middock on it: ./install.sh --key ../id_ed25519.pub --compose-from-debian-13")
        installed = install(bed)
        print(installed.stdout, end="", file=sys.stderr)
        if installed.returncode != 0:
            raise BedError(f"install.sh exited {installed.returncode}:\n{installed.stdout}{installed.stderr}")
        step("Pushing examples/hello from the laptop user: git push production main")
        create_hello(bed)
        bed.exec("ssh", "deploy@localhost", "apps:set", "hello", "port", str(TRY_APP_PORT), user=LAPTOP)
        pushed = push(bed)
        print(pushed.stderr, end="", file=sys.stderr)
        if pushed.returncode != 0 or live_url(pushed.stderr) is None:
            raise BedError(f"the push failed (exit {pushed.returncode})")
    except BaseException:
        bed.teardown()
        raise
    return f"http://127.0.0.1:{port}/"


def try_down(image: bool) -> None:
    """Remove try.sh's server: its container and volume (and the image with `image`)."""
    ServerBed(TRY_NAME).teardown()
    if image:
        _docker("image", "rm", SERVER_IMAGE, check=False)


def step(text: str) -> None:
    print(f"-----> {text}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """scripts/try.sh: `up [--port N]` or `down [--image]`."""
    parser = argparse.ArgumentParser(prog="scripts/try.sh")
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="boot the server, install middock, push examples/hello")
    up.add_argument("--port", type=int, help="the port on 127.0.0.1 where the page is served (default: free from 8000)")
    down = commands.add_parser("down", help="remove the server")
    down.add_argument("--image", action="store_true", help=f"also remove the image {SERVER_IMAGE}")
    args = parser.parse_args(argv)
    try:
        if args.command == "down":
            try_down(args.image)
            step(f"Removed {TRY_NAME}" + (f" and {SERVER_IMAGE}" if args.image else ""))
            return 0
        url = try_up(args.port)
    except BedError as error:
        print(f" !     {error}", file=sys.stderr)
        return 1
    step(f"The page is served at {url}")
    print(url)
    step(f"Remove it all with: scripts/try.sh --down (a shell on the server: docker exec -it {TRY_NAME} bash)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
