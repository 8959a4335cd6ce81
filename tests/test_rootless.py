"""A deploy key is not root: install.sh's deploy user runs its apps on a rootless Docker daemon of
its own, so what a `deploy` key pushes cannot act as the server's root.

Each attack is an app pushed over a real sshd by a key with the `deploy` role on it; each tries to
read /etc/shadow and to write into root's folders (a canary in a root-only folder, and a new file in
/root). It prints a marker first, so that the test knows the attack really ran.
"""

from __future__ import annotations

import json
import pwd
import shutil
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
from support.apps import WEB_APP_COMPOSE, write_web_app
from support.edge import assert_clean_switch
from support.images import BUSYBOX_IMAGE
from support.load import Load
from support.middock import Workdir
from support.ports import free_port
from support.rootless import docker_as
from support.ssh_server import as_user
from support.web import http_get
from support.webhooks import Receiver

from middock_receiver.errors import MiddockError
from middock_receiver.server import daemons, rootless
from middock_receiver.server.rootless import socket_path

pytestmark = pytest.mark.xdist_group("default-ports")  # the session's `deployment` (conftest.py)

RAN = "ATTACK-RAN"
ATTACK = f"echo {RAN}; cat /host/etc/shadow; echo pwned > /host/root/pwned-{{tag}}; echo pwned > /host{{canary}}/secret"

SLEEPER = f"""services:
  app:
    image: {BUSYBOX_IMAGE}
    command: ["sleep", "1000000"]
    stop_grace_period: 1s
"""


def service(**lines: str) -> str:
    """A compose file of one busybox service running `command` (a shell line), with more settings."""
    extra = "".join(f"    {key}: {value}\n" for key, value in lines.items() if key != "command")
    command = json.dumps(["sh", "-c", lines["command"]])  # YAML reads JSON
    return f"services:\n  evil:\n    image: {BUSYBOX_IMAGE}\n{extra}    command: {command}\n    stop_grace_period: 1s\n"


def build_script(command: str) -> str:
    return f"#!/bin/sh\n{command} || echo 'the attack failed'\n"


def attacks(tag: str, canary: Path) -> dict[str, dict[str, str]]:
    """Each attack's files, by name."""
    on_host = ATTACK.format(tag=tag, canary=canary)
    in_chroot = on_host.replace("/host", "")
    disk = subprocess.run(["findmnt", "-n", "-o", "SOURCE", "/"], capture_output=True, text=True).stdout.strip()
    return {
        "privileged-host-mount": {
            "compose.yaml": service(privileged="true", volumes='["/:/host"]', command=f"{on_host}; sleep 1000000"),
        },
        "build-script-docker-run": {
            "compose.yaml": SLEEPER,
            "docker/build-evil.sh": build_script(
                f"docker run --rm --privileged -v /:/host {BUSYBOX_IMAGE} chroot /host sh -c '{in_chroot}'"
            ),
        },
        "root-daemon-socket": {
            "compose.yaml": SLEEPER,
            "docker/build-evil.sh": build_script(
                f"echo {RAN}; docker -H unix:///var/run/docker.sock run --rm --privileged -v /:/host "
                f"{BUSYBOX_IMAGE} sh -c '{on_host}'"
            ),
        },
        "pid-host-nsenter": {
            "compose.yaml": service(
                pid="host",
                privileged="true",
                command=f"echo {RAN}; nsenter -t 1 -m -u -i -n -p -- sh -c '{in_chroot}'; sleep 1000000",
            ),  # fmt: skip
        },
        "all-capabilities-mount-the-disk": {
            "compose.yaml": service(
                cap_add='["ALL"]',
                security_opt='["apparmor:unconfined"]',
                command=f"mkdir -p /host && mount {disk} /host; {on_host}; sleep 1000000",
            ),  # fmt: skip
        },
    }


@pytest.fixture
def canary():
    """A secret in a root-only folder: (folder, its file's bytes and times)."""
    folder = Path(f"/root/middock-canary-{uuid.uuid4().hex[:8]}")
    folder.mkdir(mode=0o700)
    secret = folder / "secret"
    secret.write_text("root's own\n")
    secret.chmod(0o600)
    stat = secret.stat()
    yield folder, (secret.read_bytes(), stat.st_mtime_ns, stat.st_ctime_ns)
    shutil.rmtree(folder)


ATTACKS = ["privileged-host-mount", "build-script-docker-run", "root-daemon-socket", "pid-host-nsenter",
           "all-capabilities-mount-the-disk"]  # fmt: skip


@pytest.fixture(scope="module")
def mallory(deployment):
    """A key with the `deploy` role on an app of each attack, which alice (admin) created: (key, apps)."""
    apps = {attack: deployment.new_app() for attack in ATTACKS}
    return deployment.key("mallory", "--role", "deploy", "--apps", ",".join(apps.values())), apps


def shadow_hashes() -> list[str]:
    """The password hashes of /etc/shadow (what a leak would show)."""
    fields = [line.split(":") for line in Path("/etc/shadow").read_text().splitlines()]
    return [f[1] for f in fields if len(f) > 1 and len(f[1]) > 4]


@pytest.mark.parametrize("attack", ATTACKS)
def test_a_deploy_keys_app_cannot_act_as_root(deployment, mallory, canary, attack, tmp_path):
    key, app = mallory[0], mallory[1][attack]
    folder, before = canary
    tag = uuid.uuid4().hex[:8]
    work = Workdir(tmp_path / "evil")
    for name, text in attacks(tag, folder)[attack].items():
        work.write(name, text, executable=name.endswith(".sh"))
    work.commit(attack)
    work.env["GIT_SSH_COMMAND"] = key.git_ssh_command
    work.git("remote", "add", "production", key.url(f"{app}.git"))
    push = work.push()
    logs = key.run("logs", app, "-n", "100")
    seen = push.stdout + push.stderr + logs.stdout + logs.stderr
    assert RAN in seen or " !     Deploy failed: " in push.stderr, seen  # the attack ran, or the deploy failed; and …
    secret = folder / "secret"
    assert (secret.read_bytes(), secret.stat().st_mtime_ns, secret.stat().st_ctime_ns) == before, seen
    assert not Path(f"/root/pwned-{tag}").exists(), seen
    assert not any(found in seen for found in shadow_hashes()), seen


def test_the_deploy_user_is_not_in_the_docker_group_and_cannot_use_the_root_daemon(deployment):
    assert "docker" not in as_user(deployment.user, "id", "-nG").stdout.split()
    refused = as_user(deployment.user, "docker", "-H", "unix:///var/run/docker.sock", "info", check=False)
    assert refused.returncode != 0 and "permission denied" in refused.stderr.lower(), refused.stderr


def test_the_deploy_users_own_daemon_is_rootless_on_its_socket(deployment):
    info = docker_as(deployment.user, "info", "--format", "{{json .SecurityOptions}}")
    assert info.returncode == 0 and b"rootless" in info.stdout, info.stderr
    uid = pwd.getpwnam(deployment.user).pw_uid
    assert socket_path(uid).stat().st_uid == uid


def test_middock_points_the_users_programs_at_its_own_daemon(deployment, mallory):
    """A DOCKER_HOST from the environment is never used: middock sets its own."""
    app = mallory[1]["privileged-host-mount"]
    ran = as_user(deployment.user, "env", "DOCKER_HOST=tcp://127.0.0.1:1", deployment.middock, "ps", app)
    assert ran.returncode == 0, ran.stderr


# --- the plan: pure functions, no daemon -----------------------------------------------------


def test_the_daemons_unit_runs_it_as_the_user_with_the_setuid_id_mappers_allowed(monkeypatch):
    monkeypatch.setattr(rootless, "host_address", lambda: "192.0.2.10")
    owner = daemons.Owner("deploy", 1001, 1001, Path("/home/deploy"))
    spec = rootless.daemon(owner)
    unit = daemons.render_unit(spec, owner)
    assert daemons.unit_name(spec, owner) == "middock-dockerd-deploy.service"
    assert "User=deploy\n" in unit and "Delegate=yes\n" in unit and "KillMode=mixed\n" in unit
    assert "NoNewPrivileges" not in unit and "CapabilityBoundingSet" not in unit  # newuidmap is setuid
    assert '"XDG_RUNTIME_DIR=/run/middock/1001"' in unit and '"_DOCKERD_ROOTLESS_CHILD=1"' in unit
    assert "ExecStart=/usr/bin/rootlesskit --net=slirp4netns" in unit and rootless.DOCKERD_ROOTLESS in unit
    assert spec.log == Path("/home/deploy/.middock/_docker/dockerd.log")
    assert f"{rootless.DOCKERD_ROOTLESS} --host-gateway-ip=192.0.2.10\n" in unit  # host.docker.internal: the host
    monkeypatch.setattr(rootless, "host_address", lambda: None)
    assert rootless.daemon(owner).foreground[-1] == rootless.DOCKERD_ROOTLESS  # no network: Docker's own choice


def test_only_middock_chooses_the_daemon_of_a_user(monkeypatch, tmp_path):
    monkeypatch.setattr(rootless.machine, "RUN", tmp_path)
    monkeypatch.setattr(rootless.os, "geteuid", lambda: 1001)
    monkeypatch.setenv("DOCKER_HOST", "tcp://elsewhere:2375")
    rootless.use_own_daemon()
    assert "DOCKER_HOST" not in rootless.os.environ  # no daemon of its own: the default, never the one given
    (tmp_path / "1001").mkdir()
    (tmp_path / "1001" / "docker.sock").touch()
    rootless.use_own_daemon()
    assert rootless.os.environ["DOCKER_HOST"] == f"unix://{tmp_path}/1001/docker.sock"
    monkeypatch.setattr(rootless.os, "geteuid", lambda: 0)
    monkeypatch.setenv("DOCKER_HOST", "unix:///var/run/docker.sock")
    rootless.use_own_daemon()
    assert rootless.os.environ["DOCKER_HOST"] == "unix:///var/run/docker.sock"  # root: as it was given


def test_what_the_daemon_lacks_is_said_with_the_command_that_gives_it(monkeypatch, tmp_path):
    owner = daemons.Owner("deploy", 1001, 1001, Path("/home/deploy"))
    monkeypatch.setattr(rootless, "missing_programs", lambda: [])
    tun = tmp_path / "tun"
    tun.touch(mode=0o600)
    monkeypatch.setattr(rootless, "TUN", str(tun))
    with pytest.raises(MiddockError, match=f"chmod 0666 {tun}"):  # a container's /dev, without udev
        rootless.check_ready(owner)
    tun.chmod(0o666)
    monkeypatch.setattr(rootless, "subordinate_ids", lambda name: False)
    with pytest.raises(MiddockError, match="usermod --add-subuids"):
        rootless.check_ready(owner)


# --- an app behind the edge, on the rootless daemon --------------------------------------------


# the web service's memory limit, which rootless Docker on cgroup v1 cannot enforce
LIMITED = "    init: true\n    mem_limit: 256m\n"


@pytest.mark.slow
def test_behind_the_edge_a_push_a_rollback_and_a_restart_drop_no_request_then_scale_and_maintenance(
    deployment, tmp_path
):
    """rootlesskit forwards the app's loopback port to the container; the edge switches between
    releases as on the root daemon. Fewer clients than the zero-drop group's tests: this one runs
    beside them (it shares the session's deploy user with test_ssh.py)."""
    alice = deployment.alice
    app, port = deployment.new_app(), free_port()
    assert alice.run("apps:set", app, "port", str(port)).returncode == 0
    work = Workdir(tmp_path / "web")
    work.env["GIT_SSH_COMMAND"] = alice.git_ssh_command
    work.git("remote", "add", "production", alice.url(f"{app}.git"))

    def push(version: str) -> str:
        write_web_app(work, version, compose=WEB_APP_COMPOSE.replace("    init: true\n", LIMITED, 1))
        work.commit(version)
        pushed = work.push()
        assert pushed.returncode == 0 and "is live" in pushed.stderr, pushed.stderr
        return pushed.stderr

    receiver = Receiver()  # the deploy user's detached deliverer posts from the host, whatever the daemon
    assert alice.run("notify:add", app, receiver.url, "--allow-private").returncode == 0
    said = push("v1")
    event = json.loads(receiver.wait(1)[0].body)
    assert (event["event"], event["app"], event["pusher"]) == ("deploy", app, "alice"), event
    receiver.close()
    if Path("/sys/fs/cgroup/memory").is_dir():  # cgroup v1: Docker's rootless mode enforces no limit there
        assert "Warning: the resource limits of web are not enforced: rootless Docker has none" in said, said
    assert http_get(port) == "v1\n"
    clients = {"keepalive": 1, "fresh": 1, "slow": 1}
    with Load(port, **clients) as load:
        time.sleep(1)
        push("v2")
        time.sleep(1)
    assert_clean_switch(load.report, "v1", "v2")
    with Load(port, **clients) as load:
        time.sleep(1)
        rolled = alice.run("rollback", app)
        assert "is live" in rolled.stdout, rolled.stdout + rolled.stderr
        time.sleep(1)
    assert_clean_switch(load.report, "v2", "v1")
    with Load(port, **clients) as load:
        time.sleep(1)
        restarted = alice.run("ps:restart", app)
        assert restarted.returncode == 0, restarted.stderr
        time.sleep(1)
    assert not load.report.failures, load.report.summary()
    assert http_get(port) == "v1\n"

    scaled = alice.run("ps:scale", app, "worker=2")
    assert "is live" in scaled.stdout, scaled.stdout + scaled.stderr
    assert "worker=2" in alice.run("ps:scale", app).stdout
    assert alice.run("maintenance:on", app).returncode == 0
    with pytest.raises(urllib.error.HTTPError, match="503"):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5)
    assert alice.run("maintenance:off", app).returncode == 0
    assert http_get(port) == "v1\n"


def test_swarm_init_asks_before_making_every_deploy_key_root_and_never_strands_apps(deployment):
    """A Swarm needs the root daemon: without --yes-deploy-is-root swarm:init changes nothing; with it,
    it refuses while apps run on the user's own daemon (they would be left behind)."""

    def swarm_init(*options: str) -> subprocess.CompletedProcess:
        argv = [deployment.middock, "swarm:init", "--user", deployment.user, *options]
        return subprocess.run(argv, capture_output=True, text=True, timeout=120)

    deployment.new_app()  # the session's user may have none yet
    for options, says in [((), "add --yes-deploy-is-root"), (("--yes-deploy-is-root",), "before the first app")]:
        refused = swarm_init(*options)
        assert refused.returncode == 1 and refused.stderr.count("\n") == 1 and says in refused.stderr, refused.stderr
    assert "docker" not in as_user(deployment.user, "id", "-nG").stdout.split()
    assert rootless.answers(pwd.getpwnam(deployment.user).pw_uid)
