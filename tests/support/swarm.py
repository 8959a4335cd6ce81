"""middock on the Swarm bed: its server and work tree inside node 1's namespace, the app, the load, and
what an admin does to make the Swarm."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

from support.apps import WEB_APP_COMPOSE
from support.middock import ROOT, Server, Workdir
from support.swarm_bed import SwarmBed, folder_state

COMPOSE = WEB_APP_COMPOSE.replace(  # the edge tests' app, with 3 web tasks and a worker that talks
    "    stop_grace_period: 1s\n  worker:", "    stop_grace_period: 1s\n    deploy: {replicas: 3}\n  worker:"
).replace('["sleep", "1000000"]', '["sh", "-c", "while true; do echo working on $$(hostname); sleep 1; done"]')


class SwarmServer(Server):
    """middock as the manager runs it: inside node 1's namespace, its Docker the manager's."""

    def __init__(self, home: Path, bed: SwarmBed) -> None:
        super().__init__(home)
        self.bed = bed
        self.env = {**bed.env(1), "MIDDOCK_HOME": str(home)}

    def middock(
        self, *args: str, check: bool = True, input: str | None = None, admin: bool = False
    ) -> subprocess.CompletedProcess:
        """admin=True: run by root on the manager the way its admin does (the bed's as_root), where /etc/docker
        is the manager's own; otherwise in the manager's network namespace only, as the deploys run."""
        command = [sys.executable, "-m", "middock_receiver", *args]
        if admin:  # the same middock as the other commands run (PYTHONPATH), in an admin's clean environment
            env = {key: self.env[key] for key in ("MIDDOCK_HOME", "PYTHONPATH") if key in self.env}
            result = self.bed.as_root(1, command, env=env, timeout=600)
        else:
            argv = ["ip", "netns", "exec", self.bed.manager.name, *command]
            result = subprocess.run(argv, env=self.env, input=input, capture_output=True, text=True, timeout=600)
        if check and result.returncode != 0:
            raise AssertionError(
                f"middock {' '.join(args)} exited {result.returncode}:\n{result.stdout}{result.stderr}"
            )
        return result

    def get(self, path: str = "/", port: int | None = None) -> str:
        return self.bed.http_get(f"http://127.0.0.1:{port or self.port}{path}")

    def cleanup(self) -> None:
        for app in self.apps:
            self.middock("apps:destroy", app, "--force", check=False)
        self.middock("edge:stop", check=False)
        for name in ("registry", "registry-push"):
            pidfile = self.home / ".middock" / "_swarm" / "registry" / f"{name}.pid"
            if pidfile.exists():
                subprocess.run(["kill", pidfile.read_text().strip()], check=False)


class SwarmWork(Workdir):
    """A work tree whose pushes run inside node 1's namespace (the hook, the deploy after it)."""

    def __init__(self, path: Path, server: SwarmServer) -> None:
        super().__init__(path)
        self.env.update(server.env)
        self.namespace = server.bed.manager.name

    def push_argv(self, *args: str) -> list[str]:
        return ["ip", "netns", "exec", self.namespace, "git", "push", "production", *(args or ("main",))]

    def push(self, *args: str, check: bool = False) -> subprocess.CompletedProcess:
        argv = self.push_argv(*args)
        result = subprocess.run(argv, cwd=self.path, env=self.env, capture_output=True, text=True, timeout=600)
        assert not check or result.returncode == 0, result.stderr
        return result


class Load:
    """tests/support/load.py run inside node 1's namespace, against the app's port on the edge."""

    def __init__(self, server: SwarmServer, folder: Path) -> None:
        self.stop_file = folder / f"stop-{uuid.uuid4().hex[:6]}"
        argv = [
            "ip",
            "netns",
            "exec",
            server.bed.manager.name,
            sys.executable,
            str(ROOT / "tests" / "support" / "load.py"),
        ]
        argv += ["--port", str(server.port), "--stop-file", str(self.stop_file)]
        self.process = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None and self.process.stdout.readline() == "started\n"

    def stop(self) -> dict:
        time.sleep(1)
        self.stop_file.touch()
        out, _ = self.process.communicate(timeout=120)
        return json.loads(out)


def start_middock(server: SwarmServer, *init_options: str) -> None:
    """What an admin does on a bed of bare engines (SwarmBed(swarm=False)), as root on each server:
    `middock swarm:init --advertise-addr IP [init_options]` on the manager, then the exact output of
    `middock nodes:join-script` run as a script on every other node, then the edge. Sets
    server.init (swarm:init's output) and server.script. Whatever the commands write to /etc/docker
    goes to the nodes' own folders: the host's must come out unchanged."""
    bed = server.bed
    assert not bed.with_swarm, "the admin makes the Swarm here: SwarmBed(swarm=False)"
    host_etc_docker = folder_state()
    init = ["swarm:init", "--advertise-addr", bed.manager.address, *init_options]
    server.init = server.middock(*init, admin=True).stdout
    bed.tune_swarm()  # a 1 s heartbeat: a dead node is noticed in seconds
    server.script = server.middock("nodes:join-script").stdout
    for node in bed.nodes[1:]:
        joined = bed.run_script(node, server.script)
        assert joined.returncode == 0, f"the join script failed on {node.name}:\n{joined.stdout}{joined.stderr}"
    bed.wait_ready()
    assert folder_state() == host_etc_docker, "the host's /etc/docker changed"
    server.middock("edge:start")  # ports 80 and 443, inside the namespace
