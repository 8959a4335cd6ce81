"""A multi-node Docker Swarm on one machine, for tests that need a real cluster.

How the bed is built, and why (the measurements behind it are in SWARM-NOTES.md):

* Network: one namespace holds a Linux bridge, every node is a namespace joined to it by a veth pair
  created directly between the two namespaces. The bed gets a private /24 in a 10.X.0.0/16 block that
  overlaps nothing in the host's routing tables (nor another live bed) and has no default route, so
  nothing is added to or routed from the host's network. Every dockerd's iptables rules live in its
  node's namespace and go away with it.
* Engines: one dockerd per node, started by ``ip netns exec`` (which also gives it a private mount
  namespace, slave to the host's, so its mounts never reach the host). A small launcher then remounts
  the cgroup hierarchies (``ip netns exec`` remounts /sys and hides them), mounts a private tmpfs on
  /run (the node's containerd, shims and docker see none of the host engine's sockets or state) and
  binds the node's own folder over /etc/docker. That bind is how each engine gets its own
  ``certs.d``: dockerd 20.10 reads registry CAs only from the compiled-in ``/etc/docker/certs.d``
  (rootless mode aside) and has no option to move it; DOCKER_CONFIG is the CLI's, not the daemon's.
  The same bind gives every engine its own key.json, so its own engine ID.
* Processes: every process of a node (dockerd, containerd, shims, containers) lives in the cgroup
  subtree ``/<bed name>/nI`` (dockerd in ``nI/daemon``, containers through ``--cgroup-parent``), the
  registry in ``/<bed name>/registry``. Teardown and "kill a node" kill by cgroup membership (and by
  network namespace), never by process name, so they cannot touch the host's own engine.
* Registry: Debian's ``docker-registry`` in node 1's namespace, listening on node 1's address only,
  with TLS from a throwaway CA (openssl) that each engine trusts through its own certs.d.
* Or only the engines (``swarm=False``): no Swarm, and no engine trusts anything, so a test can do what an
  admin does on real servers, as root on a node: ``bed.as_root(node, argv)`` and ``bed.run_script(node,
  text)`` run in the mount, network and UTS namespaces of the node's dockerd (its /etc/docker is the node's
  own folder; a plain ``ip netns exec`` would see the host's), with DOCKER_HOST at the node's engine (its
  default socket is not there). Then ``bed.tune_swarm()`` and ``bed.wait_ready()``.
* Images: build on node 1 (the manager; the middock server builds against the manager's engine in
  production) with the host's docker CLI and ``bed.env()`` (DOCKER_HOST=node 1's socket), then
  ``bed.push()`` it to the registry and deploy ``REGISTRY/REPO@sha256:...``: every node pulls that
  digest. ``bed.load_image()`` copies an image from another engine (e.g. the host's) instead.
* Names come from a short random id (``mdbed`` + 6 hex), used for the namespaces, the cgroup, the
  folder and the host names, so two beds, or a bed and the leftovers of a crashed run, never collide.
  A bed holds a lock on its folder while alive; ``reap_stale_beds()`` removes the ones nobody holds.

A test that deploys (the registry address and ports are only reachable from inside the namespaces)::

    with SwarmBed() as bed:  # or the swarm_bed fixture
        bed.docker("build", "-t", "app:1", context)  # node 1's engine, through the host's CLI
        image = bed.push("app:1", "app")  # "10.X.0.2:5000/app@sha256:..."
        bed.docker("stack", "deploy", "--detach=true", "--compose-file", stack_file, "app")
        task = bed.running_tasks("app_web")[0]  # host-mode ports: task["Ports"] = {target: published}
        bed.http_get(f"http://{bed.node(task['NodeName']).address}:{task['Ports'][8080]}/")

Needs root, iproute2, docker.io (dockerd and the docker CLI), openssl and docker-registry.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import ipaddress
import json
import os
import random
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import docker
import pytest

__all__ = [
    "BedError",
    "Node",
    "SwarmBed",
    "folder_state",
    "missing_requirements",
    "reap_stale_beds",
    "swarm_bed",
]

PREFIX = "mdbed"
NAME_PATTERN = re.compile(rf"^{PREFIX}[0-9a-f]{{6}}$")
REGISTRY_PORT = 5000
SWARM_PORT = 2377
MAX_NODES = 13  # each node takes a /20 of the bed's /16 for its bridges, the swarm pool takes the last /19
CGROUP_ROOT = Path("/sys/fs/cgroup")
ETC_DOCKER = Path("/etc/docker")
MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_BIND = 0x2, 0x4, 0x8, 0x1000
# VFS flags that /proc/self/mounts lists among a cgroup mount's options but mount(2) does not accept as data.
VFS_OPTIONS = {"rw", "ro", "relatime", "noatime", "nodiratime", "strictatime", "lazytime", "nosuid", "nodev", "noexec"}

# Runs in the child after `ip netns exec`: mounts what the spec says (ctypes, so no short-lived helper process
# escapes the cgroup), gives it its own host name, joins its cgroups and execs the daemon. Data arrives as one
# JSON argument; nothing here is built from data.
_LAUNCHER = """
import ctypes, json, os, socket, sys
spec = json.loads(sys.argv[1])
libc = ctypes.CDLL(None, use_errno=True)
libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
def enc(text):
    return text.encode() if text else None
if spec["hostname"]:
    if libc.unshare(0x04000000):
        sys.exit("unshare(CLONE_NEWUTS): " + os.strerror(ctypes.get_errno()))
    socket.sethostname(spec["hostname"])
for source, target, fstype, flags, data in spec["mounts"]:
    os.makedirs(target, exist_ok=True)
    if libc.mount(enc(source), enc(target), enc(fstype), flags, enc(data)):
        sys.exit("mount " + target + ": " + os.strerror(ctypes.get_errno()))
for procs in spec["cgroups"]:
    with open(procs, "w") as handle:
        handle.write(str(os.getpid()))
os.execve(spec["argv"][0], spec["argv"], spec["env"])
"""

# Fetches a URL from inside a namespace: stdlib only, and no proxy from the environment.
_FETCH = """
import sys, urllib.request
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
sys.stdout.write(opener.open(sys.argv[1], timeout=float(sys.argv[2])).read().decode())
"""


class BedError(RuntimeError):
    """The bed could not be started, or a node did not do what it was asked to."""


@dataclass
class Node:
    """One Swarm node: a network namespace with its own dockerd."""

    index: int
    name: str  # network namespace, host name and Swarm node name
    address: str  # on the bed's /24
    dir: Path
    bip: str
    address_pool: str
    cgroup: str  # relative to a hierarchy's root: /<bed>/nI
    storage_driver: str = "overlay2"
    process: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def socket(self) -> Path:
        return self.dir / "docker.sock"

    @property
    def docker_host(self) -> str:
        """The DOCKER_HOST value that reaches this node's engine from the host."""
        return f"unix://{self.socket}"

    @property
    def etc_dir(self) -> Path:
        """Mounted over /etc/docker in this node's mount namespace: its daemon.json, key.json and certs.d."""
        return self.dir / "etc-docker"

    @property
    def log(self) -> Path:
        return self.dir / "dockerd.log"

    @property
    def docker_config(self) -> Path:
        """Root's Docker CLI configuration on this node (as_root's DOCKER_CONFIG): a `docker login`
        there stays with the node, never in the host's /root/.docker."""
        return self.dir / "docker-config"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


class SwarmBed:
    """N Swarm nodes in network namespaces, node 1 the manager, the others workers, plus a TLS registry.

    Use as a context manager, or call start() and teardown() (safe to call twice, and after a failed start).
    """

    def __init__(
        self,
        nodes: int = 3,
        *,
        registry: bool = True,
        swarm: bool = True,
        dispatcher_heartbeat: float | None = None,
        storage_driver: str = "overlay2",
        base_dir: str | os.PathLike | None = None,
    ) -> None:
        """swarm=False: start the engines (and the registry) only; the test makes the Swarm and the trust in the
        registry itself, as root on the nodes (as_root, run_script), which is what it means to test the tools
        an admin runs. dispatcher_heartbeat: seconds between worker heartbeats; Swarm's default is 5 s, and a
        dead node is noticed after a few of them, so a smaller value makes rescheduling tests faster."""
        if not 1 <= nodes <= MAX_NODES:
            raise ValueError(f"a bed has 1 to {MAX_NODES} nodes, not {nodes}")
        self.size = nodes
        self.with_registry = registry
        self.with_swarm = swarm
        self.dispatcher_heartbeat = dispatcher_heartbeat
        self.default_storage_driver = storage_driver
        self.base_dir = Path(base_dir or tempfile.gettempdir())
        self.name = ""
        self.dir = Path()
        self.nodes: list[Node] = []
        self.octet = 0
        self.registry_trust = "tls"  # or "insecure" when /etc/docker does not exist to be mounted over
        self.registry_process: subprocess.Popen | None = None
        self.timings: dict[str, float] = {}
        self._lock: int | None = None
        self._clients: dict[int, docker.DockerClient] = {}
        self._started = False

    # --- names and addresses -------------------------------------------------------------------------------

    @property
    def switch(self) -> str:
        """The namespace holding the bridge every node is plugged into."""
        return f"{self.name}-sw"

    @property
    def subnet(self) -> str:
        return f"10.{self.octet}.0.0/24"

    @property
    def swarm_pool(self) -> str:
        """Where Swarm takes overlay subnets from (ingress and stack networks)."""
        return f"10.{self.octet}.224.0/19"

    @property
    def manager(self) -> Node:
        return self.nodes[0]

    @property
    def registry(self) -> str:
        """HOST:PORT of the bed's registry, the prefix of every image reference the nodes pull."""
        return f"{self.manager.address}:{REGISTRY_PORT}"

    @property
    def ca_cert(self) -> Path:
        """The throwaway CA the registry's certificate is signed by."""
        return self.dir / "ca" / "ca.crt"

    @property
    def addresses(self) -> list[str]:
        return [node.address for node in self.nodes]

    def node(self, which: int | str | Node) -> Node:
        """A node by index (1-based), name, or the Node itself."""
        if isinstance(which, Node):
            return which
        for node in self.nodes:
            if which in (node.index, node.name):
                return node
        raise KeyError(which)

    # --- start ---------------------------------------------------------------------------------------------

    def __enter__(self) -> SwarmBed:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.teardown()

    def start(self) -> SwarmBed:
        """Build everything; on any failure, tear down what was built and raise."""
        if self._started:
            raise BedError("a SwarmBed starts once; make a new one")
        self._started = True
        try:
            self._timed("folder", self._claim)
            self._timed("network", self._make_network)
            self._timed("certificates", self._make_certificates)
            self._timed("engines", self._start_engines)
            if self.with_swarm:
                self._timed("swarm", self._make_swarm)
                self._timed("ready", self.wait_ready)
        except BaseException:
            self.teardown()
            raise
        self.timings["total"] = round(sum(self.timings.values()), 3)
        return self

    def _timed(self, phase: str, step) -> None:
        began = time.monotonic()
        step()
        self.timings[phase] = round(time.monotonic() - began, 3)

    def _claim(self) -> None:
        """A fresh name, a folder locked for as long as this bed lives, and an address block nobody uses."""
        self.base_dir.mkdir(parents=True, exist_ok=True)
        for _ in range(20):
            name = PREFIX + secrets.token_hex(3)
            if _namespace_names(name) or _cgroup_dirs(name):
                continue
            try:
                (self.base_dir / name).mkdir()
            except FileExistsError:
                continue
            self.name, self.dir = name, self.base_dir / name
            break
        else:
            raise BedError(f"no free bed name in {self.base_dir}")
        self._lock = os.open(self.dir / "lock", os.O_CREAT | os.O_RDWR, 0o600)
        fcntl.flock(self._lock, fcntl.LOCK_EX)
        self.octet = _free_octet(self.base_dir, self.name)
        for index in range(1, self.size + 1):
            self.nodes.append(
                Node(
                    index=index,
                    name=f"{self.name}-n{index}",
                    address=f"10.{self.octet}.0.{index + 1}",
                    dir=self.dir / f"n{index}",
                    bip=f"10.{self.octet}.{16 * index}.1/24",
                    address_pool=f"10.{self.octet}.{16 * index + 8}.0/21",
                    cgroup=f"/{self.name}/n{index}",
                    storage_driver=self.default_storage_driver,
                )
            )
        longest = max(len(str(node.socket)) for node in self.nodes)
        if longest > 100:
            raise BedError(f"socket paths under {self.base_dir} are too long for unix sockets ({longest} chars)")
        state = {"name": self.name, "octet": self.octet, "owner": os.getpid(), "nodes": self.size}
        (self.dir / "state.json").write_text(json.dumps(state))

    def _make_network(self) -> None:
        _ip("netns", "add", self.switch)
        _ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.switch, "link", "set", "br0", "up")
        for node in self.nodes:
            port = f"n{node.index}"  # the switch side of the node's veth pair
            _ip("netns", "add", node.name)
            _ip("-n", self.switch, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", node.name)
            _ip("-n", self.switch, "link", "set", port, "master", "br0", "up")
            _ip("-n", node.name, "addr", "add", f"{node.address}/24", "dev", "eth0")
            _ip("-n", node.name, "link", "set", "eth0", "up")
            _ip("-n", node.name, "link", "set", "lo", "up")

    def _make_certificates(self) -> None:
        """A throwaway CA, the registry's certificate for node 1's address, and (when the bed makes the Swarm)
        the CA in every engine's certs.d: without a Swarm, trusting the registry is the test's to do."""
        if not ETC_DOCKER.is_dir():
            # Nothing to bind the node's own folder over: fall back to trusting the registry without TLS checks.
            self.registry_trust = "insecure"
        for node in self.nodes:
            node.etc_dir.mkdir(parents=True)
        if not self.with_registry:
            return
        ca = self.ca_cert.parent
        ca.mkdir()
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        _run(["openssl", "req", "-x509", *ec, "-days", "2", "-subj", f"/CN={self.name} test CA"]
             + ["-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"]
             + ["-keyout", str(ca / "ca.key"), "-out", str(self.ca_cert)])  # fmt: skip
        _run(["openssl", "req", *ec, "-subj", f"/CN={self.manager.address}"]
             + ["-keyout", str(ca / "registry.key"), "-out", str(ca / "registry.csr")])  # fmt: skip
        (ca / "registry.ext").write_text(
            f"subjectAltName=IP:{self.manager.address}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"
        )
        _run(["openssl", "x509", "-req", "-in", str(ca / "registry.csr"), "-days", "2", "-CA", str(self.ca_cert)]
             + ["-CAkey", str(ca / "ca.key"), "-CAcreateserial", "-extfile", str(ca / "registry.ext")]
             + ["-out", str(ca / "registry.crt")])  # fmt: skip
        for node in self.nodes if self.with_swarm else []:
            trusted = node.etc_dir / "certs.d" / self.registry
            trusted.mkdir(parents=True)
            shutil.copy(self.ca_cert, trusted / "ca.crt")

    def _start_engines(self) -> None:
        for node in self.nodes:
            self._launch_engine(node)
        if self.with_registry:
            self._launch_registry()
        for node in self.nodes:
            self._wait_engine(node)
        if self.with_registry:
            self._wait_registry()

    def _daemon_config(self, node: Node) -> dict:
        config = {
            "data-root": str(node.dir / "data"),
            "exec-root": str(node.dir / "exec"),
            "pidfile": str(node.dir / "docker.pid"),
            "hosts": [node.docker_host],
            "bip": node.bip,
            "default-address-pools": [{"base": node.address_pool, "size": 24}],
            "cgroup-parent": node.cgroup,
            "storage-driver": node.storage_driver,
            "shutdown-timeout": 3,
            "deprecated-key-path": str(node.etc_dir / "key.json"),
            "log-level": "warn",
        }
        if self.with_registry and self.with_swarm and self.registry_trust == "insecure":
            config["insecure-registries"] = [self.registry]
        return config

    def _launch_engine(self, node: Node) -> None:
        config = node.etc_dir / "daemon.json"
        config.write_text(json.dumps(self._daemon_config(node), indent=2))
        mounts = _cgroup_mount_specs() + [["tmpfs", "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=755"]]
        if self.registry_trust == "tls":
            mounts.append([str(node.etc_dir), str(ETC_DOCKER), None, MS_BIND, None])
        tracker = _tracking_hierarchy()
        daemon_cgroup = tracker / node.cgroup.lstrip("/") / "daemon"
        daemon_cgroup.mkdir(parents=True, exist_ok=True)
        spec = {
            "hostname": node.name,
            "mounts": mounts,
            "cgroups": [str(daemon_cgroup / "cgroup.procs")],
            "argv": [_which("dockerd"), "--config-file", str(config)],
            "env": _clean_env(),
        }
        node.process = _launch(node.name, spec, node.log)

    def _wait_engine(self, node: Node, timeout: float = 60) -> None:
        """Wait for the engine to answer; if overlay2 is what killed it, start it again on vfs and say so."""
        deadline = time.monotonic() + timeout
        while True:
            if node.process is None or node.process.poll() is not None:
                log = _tail(node.log)
                if node.storage_driver == "overlay2" and any(word in log for word in ("graphdriver", "overlay")):
                    reason = next((line for line in log.split(" | ") if "graphdriver" in line), log)
                    warnings.warn(
                        f"{node.name}: overlay2 failed, falling back to vfs (slow, big): {reason}", stacklevel=2
                    )
                    node.storage_driver = "vfs"
                    self._launch_engine(node)
                    continue
                raise BedError(f"dockerd of {node.name} exited: {log}")
            if _pings(node.socket):
                return
            if time.monotonic() > deadline:
                raise BedError(f"dockerd of {node.name} did not answer within {timeout} s: {_tail(node.log)}")
            time.sleep(0.05)

    def _launch_registry(self) -> None:
        folder = self.dir / "registry"
        folder.mkdir()
        ca = self.ca_cert.parent
        config = {
            "version": "0.1",
            "log": {"level": "warn", "accesslog": {"disabled": True}},
            "storage": {"filesystem": {"rootdirectory": str(folder / "data")}, "delete": {"enabled": True}},
            "http": {
                "addr": self.registry,
                "tls": {"certificate": str(ca / "registry.crt"), "key": str(ca / "registry.key")},
            },
        }
        (folder / "config.yml").write_text(json.dumps(config, indent=2))  # JSON is YAML
        cgroup = _tracking_hierarchy() / self.name / "registry"
        cgroup.mkdir(parents=True, exist_ok=True)
        spec = {
            "hostname": None,
            "mounts": _cgroup_mount_specs(),
            "cgroups": [str(cgroup / "cgroup.procs")],
            "argv": [_which("docker-registry"), "serve", str(folder / "config.yml")],
            "env": _clean_env(),
        }
        self.registry_process = _launch(self.manager.name, spec, folder / "registry.log")

    def _wait_registry(self, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while not _listening(self.registry_process, self.manager.address, REGISTRY_PORT):
            if self.registry_process.poll() is not None:
                raise BedError(f"the registry exited: {_tail(self.dir / 'registry' / 'registry.log')}")
            if time.monotonic() > deadline:
                raise BedError(f"the registry did not listen on {self.registry} within {timeout} s")
            time.sleep(0.05)

    def _make_swarm(self) -> None:
        manager = self.client(1)
        spec = {}
        if self.dispatcher_heartbeat:
            spec["dispatcher_heartbeat_period"] = int(self.dispatcher_heartbeat * 1e9)
        manager.swarm.init(
            advertise_addr=self.manager.address,
            listen_addr=f"{self.manager.address}:{SWARM_PORT}",
            default_addr_pool=[self.swarm_pool],
            subnet_size=24,
            **spec,
        )
        token = manager.swarm.attrs["JoinTokens"]["Worker"]

        def join(node: Node) -> None:
            self.client(node).swarm.join(
                remote_addrs=[f"{self.manager.address}:{SWARM_PORT}"],
                join_token=token,
                listen_addr=f"{node.address}:{SWARM_PORT}",
                advertise_addr=node.address,
            )

        with ThreadPoolExecutor(max_workers=max(1, self.size - 1)) as pool:
            list(pool.map(join, self.nodes[1:]))

    # --- using the bed -------------------------------------------------------------------------------------

    def env(self, which: int | str | Node = 1, base: dict[str, str] | None = None) -> dict[str, str]:
        """Environment for the host's docker CLI (or docker.from_env) to reach one node's engine."""
        env = dict(os.environ if base is None else base)
        for key in ("DOCKER_CONTEXT", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH"):
            env.pop(key, None)
        env["DOCKER_HOST"] = self.node(which).docker_host
        return env

    def client(self, which: int | str | Node = 1) -> docker.DockerClient:
        """A docker SDK client for one node's engine (cached; closed by teardown)."""
        node = self.node(which)
        if node.index not in self._clients:
            self._clients[node.index] = docker.DockerClient(base_url=node.docker_host, version="auto", timeout=60)
        return self._clients[node.index]

    def docker(self, *args: str, node: int | str | Node = 1, check: bool = True, timeout: float = 120):
        """Run the host's docker CLI against one node; returns the CompletedProcess (text, captured)."""
        result = subprocess.run(
            ["docker", *args], env=self.env(node), capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and result.returncode:
            raise BedError(f"docker {' '.join(args)} on {self.node(node).name}: {result.stderr.strip()}")
        return result

    def run_in(self, which: int | str | Node, argv: Sequence[str], **kwargs) -> subprocess.CompletedProcess:
        """Run a command inside a node's network namespace (the only place node addresses are reachable)."""
        return subprocess.run(["ip", "netns", "exec", self.node(which).name, *argv], **kwargs)

    def as_root(
        self,
        which: int | str | Node,
        argv: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        timeout: float = 120,
    ) -> subprocess.CompletedProcess:
        """Run a command as root on a node, as its admin would on a server of its own: in the mount, network and
        UTS namespaces of the node's dockerd, so /etc/docker is the node's own folder (checked first: run_in's
        ``ip netns exec`` sees the host's, which nothing may write), with DOCKER_HOST at the node's engine (its
        default socket is not in the node) and none of the test's proxy or DOCKER_* settings; env adds to that.
        The command joins the node's cgroup, so what it leaves running (a registry) dies with the node.
        Returns the CompletedProcess (text, captured, not checked)."""
        node = self.node(which)
        pid = self._dockerd_with_own_etc(node)
        cgroup = _tracking_hierarchy() / node.cgroup.lstrip("/") / "admin"
        cgroup.mkdir(parents=True, exist_ok=True)
        spec = {
            "hostname": None,
            "mounts": [],
            "cgroups": [str(cgroup / "cgroup.procs")],
            "argv": [_which("nsenter"), f"--target={pid}", "--mount", "--net", "--uts", "--wd=/", "--", *argv],
            "env": {
                **_clean_env(),
                "DOCKER_HOST": node.docker_host,
                "DOCKER_CONFIG": str(node.docker_config),
                **(env or {}),
            },
        }
        return subprocess.run(
            [sys.executable, "-I", "-S", "-c", _LAUNCHER, json.dumps(spec)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def run_script(self, which: int | str | Node, text: str, *, timeout: float = 120) -> subprocess.CompletedProcess:
        """Run a shell script (an admin's, such as middock's join script) as root on a node (as_root), saved as
        an executable file the way an admin runs one, so its own #! line and `set -e` decide how it runs."""
        node = self.node(which)
        script = node.dir / f"script-{secrets.token_hex(3)}.sh"
        script.write_text(text)
        script.chmod(0o700)
        return self.as_root(node, [str(script)], timeout=timeout)

    def _dockerd_with_own_etc(self, node: Node) -> int:
        """The pid of the node's dockerd, once sure that /etc/docker in its mount namespace is the node's own
        folder: where the bind is missing (insecure fallback, a launcher gone wrong) a command would write the
        host's /etc/docker instead."""
        if not node.running:
            raise BedError(f"{node.name} is not running")
        pid = node.process.pid
        try:
            inside = os.stat(f"/proc/{pid}/root{ETC_DOCKER}")
        except OSError as error:
            raise BedError(f"{node.name} has no {ETC_DOCKER} of its own: {error}") from None
        own = node.etc_dir.stat()
        if (inside.st_dev, inside.st_ino) != (own.st_dev, own.st_ino):
            raise BedError(f"{ETC_DOCKER} of {node.name} is not {node.etc_dir}: refusing to run a command there")
        return pid

    def tune_swarm(self) -> None:
        """Give a Swarm made on node 1 by someone else (middock's swarm:init) the bed's settings: its dispatcher
        heartbeat, which every worker takes up at its next heartbeat."""
        if self.dispatcher_heartbeat:
            self.docker("swarm", "update", "--dispatcher-heartbeat", f"{self.dispatcher_heartbeat:g}s")

    def http_get(self, url: str, *, via: int | str | Node = 1, timeout: float = 5) -> str:
        """The body at url, fetched from inside a node's namespace."""
        result = self.run_in(
            via,
            [sys.executable, "-I", "-c", _FETCH, url, str(timeout)],
            capture_output=True,
            text=True,
            timeout=timeout + 5,
        )
        if result.returncode:
            reason = (result.stderr.strip().splitlines() or ["no output"])[-1]
            raise BedError(f"GET {url} from {self.node(via).name}: {reason}")
        return result.stdout

    def push(self, image: str, repo: str, tag: str = "latest", *, node: int | str | Node = 1) -> str:
        """Tag an image of a node's engine into the registry, push it with the host's docker CLI, and return the
        pinned reference REGISTRY/REPO@sha256:... that every node can pull."""
        target = f"{self.registry}/{repo}:{tag}"
        self.docker("tag", image, target, node=node)
        self.docker("push", target, node=node)
        digests = json.loads(
            self.docker("image", "inspect", "--format", "{{json .RepoDigests}}", target, node=node).stdout
        )
        for reference in digests:
            if reference.startswith(f"{self.registry}/{repo}@"):
                return reference
        raise BedError(f"no digest for {target} after the push: {digests}")

    def load_image(self, image: str, source: docker.DockerClient | None = None, *, node: int | str | Node = 1) -> None:
        """Copy an image from another engine (by default the host's, read only: an image save) into a node."""
        own = source is None
        source = docker.from_env() if own else source
        try:
            found = source.images.get(image)
            # Keep the name asked for: named=True would keep the image's first tag, whatever that is.
            name = next((tag for tag in (image, f"{image}:latest") if tag in found.tags), True)
            self.client(node).images.load(found.save(named=name))
        finally:
            if own:
                source.close()

    def swarm_node_names(self) -> dict[str, str]:
        """Swarm node ID -> bed node name (the host name)."""
        return {entry.id: entry.attrs["Description"]["Hostname"] for entry in self.client(1).nodes.list()}

    def ready_nodes(self) -> list[str]:
        """Names of the nodes the manager sees as Ready."""
        return [
            entry.attrs["Description"]["Hostname"]
            for entry in self.client(1).nodes.list()
            if entry.attrs["Status"]["State"] == "ready"
        ]

    def wait_ready(self, nodes: Sequence[int | str | Node] | None = None, timeout: float = 60) -> None:
        """Wait until the manager sees these nodes (all by default) as Ready."""
        wanted = {self.node(which).name for which in (nodes or self.nodes)}
        deadline = time.monotonic() + timeout
        while not wanted <= set(self.ready_nodes()):
            if time.monotonic() > deadline:
                raise BedError(f"nodes not Ready after {timeout} s: {sorted(wanted - set(self.ready_nodes()))}")
            time.sleep(0.1)

    def running_tasks(self, service: str) -> list[dict]:
        """The service's tasks that Swarm wants running and that run, each with "NodeName" and "Ports" added:
        the published host-mode ports of the task (Status.PortStatus), reachable at the node's address."""
        names = self.swarm_node_names()
        tasks = []
        for task in self.client(1).api.tasks(filters={"service": service, "desired-state": "running"}):
            if task["Status"]["State"] != "running":
                continue
            task["NodeName"] = names.get(task.get("NodeID", ""), "")
            ports = task["Status"].get("PortStatus", {}).get("Ports") or []
            task["Ports"] = {port["TargetPort"]: port["PublishedPort"] for port in ports}
            tasks.append(task)
        return tasks

    def stop_node(self, which: int | str | Node, *, kill: bool = True, timeout: float = 20) -> None:
        """Take a node down. kill=True: SIGKILL every process of the node at once (power loss);
        kill=False: SIGTERM dockerd and let it stop its containers first. Either way nothing of the node runs
        afterwards. Stopping node 1 stops the only manager: the cluster has no control plane until it is back."""
        node = self.node(which)
        self._drop_client(node)
        if not kill and node.running:
            node.process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                node.process.wait(timeout)
        children = [node.process] if node.process is not None else []
        if not _kill_cgroup(node.cgroup, children=children, timeout=timeout):
            raise BedError(f"processes of {node.name} survived SIGKILL: {sorted(_cgroup_pids(node.cgroup))}")
        _remove_cgroups(node.cgroup, keep_top=True)
        with contextlib.suppress(FileNotFoundError):
            node.socket.unlink()

    def start_node(self, which: int | str | Node, *, wait: bool = True) -> None:
        """Start a stopped node's dockerd again; it rejoins the Swarm by itself (state is in its data root)."""
        node = self.node(which)
        if node.running:
            raise BedError(f"{node.name} is running")
        self._launch_engine(node)
        self._wait_engine(node)
        if wait:
            self.wait_ready([node])

    # --- teardown ------------------------------------------------------------------------------------------

    def teardown(self) -> None:
        """Remove everything the bed made, whatever state it is in; safe to call twice."""
        for node in list(self.nodes):
            self._drop_client(node)
        if self.name:
            processes = [node.process for node in self.nodes] + [self.registry_process]
            _destroy(self.name, self.dir, [process for process in processes if process is not None])
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None

    def _drop_client(self, node: Node) -> None:
        client = self._clients.pop(node.index, None)
        if client is not None:
            client.close()


# --- pytest -----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def swarm_bed() -> Iterator[SwarmBed]:
    """A 3-node bed shared by the session (about 2 s to start); skipped where it cannot run. Removes the
    leftovers of crashed runs first; a 1 s heartbeat makes a killed node noticed in about 3 s, not 15."""
    missing = missing_requirements()
    if missing:
        pytest.skip(f"the Swarm bed needs {', '.join(missing)}")
    reap_stale_beds()
    with SwarmBed(dispatcher_heartbeat=1) as bed:
        yield bed


def missing_requirements(registry: bool = True) -> list[str]:
    """What this machine lacks to run a bed (empty when it can)."""
    missing = [] if os.geteuid() == 0 else ["root"]
    tools = ["ip", "nsenter", "dockerd", "docker", "openssl"] + (["docker-registry"] if registry else [])
    missing += [tool for tool in tools if not _which(tool, required=False)]
    if not _cgroup_mounts():
        missing.append("cgroup hierarchies under /sys/fs/cgroup")
    return missing


def reap_stale_beds(base_dir: str | os.PathLike | None = None) -> list[str]:
    """Tear down the beds under base_dir whose owner is gone (their lock is free); returns their names."""
    base = Path(base_dir or tempfile.gettempdir())
    reaped = []
    for folder in sorted(base.glob(f"{PREFIX}*")):
        if not NAME_PATTERN.match(folder.name) or not folder.is_dir():
            continue
        try:
            lock = os.open(folder / "lock", os.O_RDWR)
        except FileNotFoundError:
            if time.time() - folder.stat().st_mtime < 60:
                continue  # a bed being created right now takes its lock just after its folder
            lock = None
        try:
            if lock is not None:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # alive
            _destroy(folder.name, folder, [])
            reaped.append(folder.name)
        finally:
            if lock is not None:
                os.close(lock)
    return reaped


# --- helpers -----------------------------------------------------------------------------------------------------


def folder_state(folder: str | os.PathLike = ETC_DOCKER) -> dict[str, str]:
    """Everything under a folder by relative path (a file's sha256 and mode, a link's target, "dir"), to show
    that something was left untouched: the host's /etc/docker by a bed's admin commands."""
    root = Path(folder)
    state = {}
    for path in sorted(root.rglob("*")):
        info = path.lstat()
        if path.is_symlink():
            value = f"-> {os.readlink(path)}"
        elif path.is_dir():
            value = f"dir {info.st_mode:o}"
        else:
            value = f"{hashlib.sha256(path.read_bytes()).hexdigest()} {info.st_mode:o}"
        state[str(path.relative_to(root))] = value
    return state


def _run(argv: list[str], **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(argv, capture_output=True, text=True, check=False, **kwargs)
    if result.returncode:
        raise BedError(f"{' '.join(argv)}: {result.stderr.strip()}")
    return result


def _ip(*args: str) -> None:
    _run(["ip", *args])


def _which(tool: str, required: bool = True) -> str:
    path = shutil.which(tool, path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"]))
    if path is None and required:
        raise BedError(f"{tool} is not installed")
    return path or ""


def _clean_env() -> dict[str, str]:
    """The daemons' environment: no proxy settings, no DOCKER_* from the test's shell."""
    return {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root", "LANG": "C.UTF-8"}


def _launch(namespace: str, spec: dict, log: Path) -> subprocess.Popen:
    """Start spec["argv"] in a namespace through the launcher, in its own session (a Ctrl-C meant for the test
    does not reach it: teardown stops it)."""
    argv = ["ip", "netns", "exec", namespace, sys.executable, "-I", "-S", "-c", _LAUNCHER, json.dumps(spec)]
    with open(log, "ab") as output:
        return subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )


def _tail(path: Path, lines: int = 5) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _pings(path: Path) -> bool:
    """Whether the engine behind a unix socket answers /_ping (a raw request: nothing to leak while it starts)."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
            connection.settimeout(2)
            connection.connect(str(path))
            connection.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            answer = b""
            while chunk := connection.recv(4096):
                answer += chunk
    except OSError:
        return False
    return answer.startswith(b"HTTP/1.") and b" 200 " in answer.split(b"\r\n", 1)[0] and answer.endswith(b"OK")


def _listening(process: subprocess.Popen, address: str, port: int) -> bool:
    """Whether something in the process's network namespace listens on address:port (read from its /proc)."""
    wanted = "{:08X}:{:04X}".format(int.from_bytes(ipaddress.IPv4Address(address).packed, "little"), port)
    try:
        table = Path(f"/proc/{process.pid}/net/tcp").read_text()
    except OSError:
        return False
    return any(line.split()[1] == wanted and line.split()[3] == "0A" for line in table.splitlines()[1:])


def _used_networks(base: Path, own: str) -> list[ipaddress.IPv4Network]:
    """Every IPv4 prefix in the host's routing tables, and the blocks of the other beds under base."""
    output = _run(["ip", "-4", "route", "show", "table", "all"]).stdout
    networks = []
    for line in output.splitlines():
        words = line.split()
        if words and words[0] in ("local", "broadcast", "unicast", "unreachable", "blackhole", "prohibit", "throw"):
            words = words[1:]
        if not words or words[0] == "default":
            continue
        with contextlib.suppress(ValueError):
            networks.append(ipaddress.ip_network(words[0], strict=False))
    for state in base.glob(f"{PREFIX}*/state.json"):
        if state.parent.name != own:
            with contextlib.suppress(OSError, ValueError, KeyError):
                networks.append(ipaddress.ip_network(f"10.{json.loads(state.read_text())['octet']}.0.0/16"))
    return networks


def _free_octet(base: Path, own: str) -> int:
    """X such that 10.X.0.0/16 overlaps no route of the host and no other bed."""
    used = _used_networks(base, own)
    free = [
        octet
        for octet in range(16, 255)
        if not any(ipaddress.ip_network(f"10.{octet}.0.0/16").overlaps(network) for network in used)
    ]
    if not free:
        raise BedError("no free 10.X.0.0/16 block for the bed")
    return random.choice(free)


def _cgroup_mounts() -> list[tuple[str, str, str]]:
    """(type, mount point, options) of the host's cgroup file systems, tmpfs parent first."""
    mounts = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        _, point, kind, options = line.split()[:4]
        inside = point == str(CGROUP_ROOT) or point.startswith(f"{CGROUP_ROOT}/")
        if inside and (kind in ("cgroup", "cgroup2") or kind == "tmpfs" and point == str(CGROUP_ROOT)):
            mounts.append((kind, point, options))
    return sorted(mounts, key=lambda mount: mount[1])


def _cgroup_mount_specs() -> list[list]:
    """Launcher mounts that rebuild the host's /sys/fs/cgroup in a namespace where `ip netns exec` hid it."""
    specs = []
    for kind, point, options in _cgroup_mounts():
        data = ",".join(option for option in options.split(",") if option not in VFS_OPTIONS)
        if kind == "tmpfs":
            specs.append(["tmpfs", point, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=755"])
        else:
            specs.append([kind, point, kind, MS_NOSUID | MS_NODEV | MS_NOEXEC, data or None])
    return specs


def _hierarchies() -> list[Path]:
    return [Path(point) for kind, point, _ in _cgroup_mounts() if kind != "tmpfs"]


def _tracking_hierarchy() -> Path:
    """The hierarchy the daemons are placed in to be found again: v1 pids if mounted, else the first one."""
    mounts = [(kind, Path(point), options) for kind, point, options in _cgroup_mounts() if kind != "tmpfs"]
    for kind, point, options in mounts:
        if kind == "cgroup" and "pids" in options.split(","):
            return point
    for kind, point, _ in mounts:
        if kind == "cgroup2":
            return point
    if not mounts:
        raise BedError("no cgroup hierarchy is mounted under /sys/fs/cgroup")
    return mounts[0][1]


def _cgroup_dirs(relative: str) -> list[Path]:
    return [top for top in (root / relative.lstrip("/") for root in _hierarchies()) if top.is_dir()]


def _cgroup_pids(relative: str) -> set[int]:
    pids = set()
    for top in _cgroup_dirs(relative):
        for folder, _, _ in os.walk(top):
            with contextlib.suppress(OSError):
                pids.update(int(pid) for pid in (Path(folder) / "cgroup.procs").read_text().split())
    return pids


def _namespace_names(bed: str) -> list[str]:
    """The network namespaces of a bed (by name: /run/netns/<bed>-*)."""
    try:
        return sorted(entry for entry in os.listdir("/run/netns") if entry.startswith(f"{bed}-"))
    except FileNotFoundError:
        return []


def _namespace_pids(namespace: str) -> set[int]:
    result = subprocess.run(["ip", "netns", "pids", namespace], capture_output=True, text=True, check=False)
    return {int(pid) for pid in result.stdout.split() if pid.isdigit()}


def _kill_cgroup(
    relative: str,
    namespaces: Sequence[str] = (),
    children: Sequence[subprocess.Popen] = (),
    timeout: float = 20,
) -> bool:
    """SIGKILL every process in a cgroup subtree (any hierarchy) and in the given namespaces, until none is left;
    children are our own Popen objects among them, reaped here."""
    deadline = time.monotonic() + timeout
    killed: set[int] = set()
    while True:
        pids = _cgroup_pids(relative)
        for namespace in namespaces:
            pids |= _namespace_pids(namespace)
        pids.discard(os.getpid())
        if not pids:
            break
        if time.monotonic() > deadline:
            return False
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        killed |= pids
        time.sleep(0.05)
    # Wait until each is dead: gone, or a zombie (no memory, files, mounts or sockets left). Orphans such as
    # containerd are reaped by init, which can take a second or more (this VM's init polls); ours are reaped here.
    reap_deadline = time.monotonic() + 5
    while time.monotonic() < reap_deadline:
        for child in children:
            child.poll()
        if all(_dead(pid) for pid in killed):
            break
        time.sleep(0.02)
    return True


def _dead(pid: int) -> bool:
    """Gone, or a zombie waiting for its parent to reap it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[0] in ("Z", "X")


def _remove_cgroups(relative: str, keep_top: bool = False, timeout: float = 10) -> None:
    """rmdir a cgroup subtree in every hierarchy, deepest first (a cgroup is removable once it is empty)."""
    deadline = time.monotonic() + timeout
    for top in _cgroup_dirs(relative):
        for folder, _, _ in os.walk(top, topdown=False):
            if keep_top and Path(folder) == top:
                continue
            while True:
                try:
                    os.rmdir(folder)
                    break
                except FileNotFoundError:
                    break
                except OSError as error:
                    if error.errno != errno.EBUSY or time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)


def _destroy(bed: str, folder: Path, processes: Sequence[subprocess.Popen]) -> None:
    """Kill, delete and remove everything named after the bed: processes (by cgroup and namespace), network
    namespaces (their bridges, veths and iptables rules go with them), cgroups, mounts, then the folder."""
    namespaces = _namespace_names(bed)
    problems = []
    if not _kill_cgroup(f"/{bed}", namespaces, processes):
        problems.append(f"processes survived SIGKILL: {sorted(_cgroup_pids(f'/{bed}'))}")
    for namespace in namespaces:
        result = subprocess.run(["ip", "netns", "delete", namespace], capture_output=True, text=True, check=False)
        if result.returncode:
            problems.append(f"ip netns delete {namespace}: {result.stderr.strip()}")
    try:
        _remove_cgroups(f"/{bed}")
    except OSError as error:
        problems.append(f"cgroup: {error}")
    # Nothing the bed mounts reaches the host (its mount namespaces are slaves that die with their processes);
    # unmount anything that did anyway, so removing the folder cannot fail or reach through a bind.
    prefix = f"{folder}/"
    for line in reversed(Path("/proc/self/mounts").read_text().splitlines()):
        point = line.split()[1]
        if point.startswith(prefix):
            subprocess.run(["umount", "-l", point], capture_output=True, check=False)
    if folder.is_dir():
        try:
            shutil.rmtree(folder)
        except OSError as error:
            problems.append(f"rm {folder}: {error}")
    if problems:
        raise BedError(f"teardown of {bed} left things behind: {'; '.join(problems)}")
