"""The Swarm: its nodes, and the stacks a release runs as (through the Docker SDK, and
`docker stack deploy` for what only the CLI does).

A release on the Swarm is a stack of its own (`APP_rN`), like a release beside another is a
Compose project of its own: the same blue/green switch works on both (pipeline/places.py).
No routing mesh is used (it needs IPVS): each web task publishes its port in host mode, and the
edge reaches the tasks at their nodes' addresses.
"""

from __future__ import annotations

import base64
import ipaddress
import re
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass

from .. import process, waiting
from ..errors import MiddockError
from .engine import docker

STACK_LABEL = "com.docker.stack.namespace"
RUNNING = "running"


@dataclass(frozen=True)
class Stack:
    """A stack and the argument lists that act on it."""

    name: str
    file: str

    def deploy(self) -> list[str]:
        detach = ["--detach=true"] if cli_waits_by_default() else []
        return [
            "docker",
            "stack",
            "deploy",
            *detach,
            "--prune",
            "--with-registry-auth",
            "--compose-file",
            self.file,
            self.name,
        ]

    def remove(self) -> list[str]:
        return ["docker", "stack", "rm", self.name]


def cli_waits_by_default() -> bool:
    """Docker's CLI from 26 on waits for a stack to converge unless told not to; older ones
    (Debian 12's 20.10) do not know the option. middock waits itself, task by task. (`docker
    --version` asks the CLI alone: `docker version` would ask the engine too.)"""
    found = re.match(r"Docker version (\d+)\.", process.capture(["docker", "--version"]).stdout)
    return found is not None and int(found[1]) >= 26


def ensure_manager(client: docker.DockerClient, advertise_addr: str) -> bool:
    """Make this engine a Swarm manager, or keep the Swarm it manages; True when it made one."""
    swarm = client.info().get("Swarm", {})
    if swarm.get("LocalNodeState") == "active":
        if not swarm.get("ControlAvailable"):
            raise MiddockError("this server's Docker is a Swarm worker: run swarm:init on a manager")
        return False
    client.swarm.init(advertise_addr=advertise_addr, listen_addr=f"{advertise_addr}:2377")
    return True


def join_command(client: docker.DockerClient, manager: str) -> list[str]:
    token = client.swarm.attrs["JoinTokens"]["Worker"]
    return ["docker", "swarm", "join", "--token", token, f"{manager}:2377"]


def node_address(node: docker.models.nodes.Node) -> str:
    address = node.attrs.get("Status", {}).get("Addr", "")
    if address in ("", "0.0.0.0"):  # a manager may report its control address only
        address = node.attrs.get("ManagerStatus", {}).get("Addr", "").rpartition(":")[0]
    return address


def nodes(client: docker.DockerClient) -> list[dict]:
    running: dict[str, int] = {}
    for task in client.api.tasks(filters={"desired-state": "running"}):
        if task["Status"]["State"] == RUNNING:
            running[task.get("NodeID", "")] = running.get(task.get("NodeID", ""), 0) + 1
    rows = []
    for node in client.nodes.list():
        rows.append(
            {
                "name": node.attrs["Description"]["Hostname"],
                "id": node.id,
                "address": node_address(node),
                "role": node.attrs["Spec"]["Role"],
                "state": node.attrs["Status"]["State"],
                "availability": node.attrs["Spec"]["Availability"],
                "tasks": running.get(node.id, 0),
            }
        )
    return sorted(rows, key=lambda row: (row["role"] != "manager", row["name"]))


def find_node(client: docker.DockerClient, name: str) -> docker.models.nodes.Node:
    for node in client.nodes.list():
        if name in (node.id, node.attrs["Description"]["Hostname"]):
            return node
    raise MiddockError(f"there is no node {name!r} in the Swarm (see: nodes)")


def set_availability(client: docker.DockerClient, name: str, availability: str) -> None:
    node = find_node(client, name)
    spec = node.attrs["Spec"]
    spec["Availability"] = availability
    node.update(spec)


def remove_node(client: docker.DockerClient, name: str) -> None:
    node = find_node(client, name)
    if node.attrs["Spec"]["Role"] == "manager":
        raise MiddockError(f"{name} is a manager: demote it first (docker node demote {name})")
    if node.attrs["Status"]["State"] == "ready":
        raise MiddockError(f"{name} is up: drain it, run `docker swarm leave` on it, then remove it")
    node.remove(force=True)


def services(client: docker.DockerClient, stack: str) -> dict[str, docker.models.services.Service]:
    """The stack's services by their name in the compose file."""
    found = client.services.list(filters={"label": f"{STACK_LABEL}={stack}"})
    return {service.name.removeprefix(f"{stack}_"): service for service in found}


def stacks(client: docker.DockerClient) -> set[str]:
    return {service.attrs["Spec"]["Labels"].get(STACK_LABEL, "") for service in client.services.list()} - {""}


def tasks(client: docker.DockerClient, service: docker.models.services.Service) -> list[dict]:
    """The service's tasks Swarm wants running, each with its node's name and address and the
    host ports it published."""
    names = {node.id: (node.attrs["Description"]["Hostname"], node_address(node)) for node in client.nodes.list()}
    here = client.info().get("Swarm", {}).get("NodeID")
    found = []
    for task in service.tasks(filters={"desired-state": "running"}):
        name, address = names.get(task.get("NodeID", ""), ("?", ""))
        ports = task["Status"].get("PortStatus", {}).get("Ports") or []
        published = {p["TargetPort"]: p["PublishedPort"] for p in ports}
        if task.get("NodeID") == here:
            published.update(bound_ports(client, task["ID"]))
        task.update(node=name, address=address, ports=published)
        found.append(task)
    return found


def bound_ports(client: docker.DockerClient, task: str) -> dict[int, int]:
    """The host ports a task's container on this node really bound. Docker takes a host-mode
    port with no number from the ephemeral range; when an outgoing connection of this busy node
    (the edge's) holds that port, the engine binds the next one and Swarm still reports the first."""
    found = {}
    for container in client.containers.list(filters={"label": f"com.docker.swarm.task.id={task}"}):
        for key, bindings in (container.attrs["NetworkSettings"].get("Ports") or {}).items():
            ipv4 = [b for b in bindings or [] if b.get("HostIp") in ("0.0.0.0", "")]
            if ipv4 and key.endswith("/tcp"):
                found[int(key.split("/")[0])] = int(ipv4[0]["HostPort"])
    return found


def problems(client: docker.DockerClient, stack: str, wanted: dict[str, int]) -> list[str]:
    """What keeps the stack from running: every service's tasks running (Swarm calls a task
    with a healthcheck running only once it is healthy), as many as it wants; empty when so.
    Two questions to the manager, whatever the size of the stack: its services, their tasks."""
    present = services(client, stack)
    names = {service.id: name for name, service in present.items() if name in wanted}
    running = dict.fromkeys(wanted, 0)
    reasons: dict[str, str] = {}
    for task in client.api.tasks(filters={"service": list(names)}) if names else []:
        name = names.get(task.get("ServiceID", ""))
        if name is None:
            continue
        if task["DesiredState"] == RUNNING and task["Status"]["State"] == RUNNING:
            running[name] += 1
        elif task["DesiredState"] == "shutdown" and task["Status"].get("Err"):
            reasons.setdefault(name, task["Status"]["Err"])
    found = []
    for name, count in wanted.items():
        if name not in present:
            found.append(f"{name}: no service")
        elif running[name] < count:
            reason = f" ({reasons[name]})" if name in reasons else ""
            found.append(f"{name}: {running[name]} of {count} tasks running{reason}")
    return found


GATE_POLL = 0.1  # asking costs the manager two lookups; tasks start within seconds of each other


def wait_running(
    client: docker.DockerClient, stack: str, wanted: dict[str, int], timeout: float, on_wait: Callable[[str], None]
) -> list[str]:
    return waiting.until_clear(lambda: problems(client, stack, wanted), timeout, on_wait, GATE_POLL)


def endpoints(client: docker.DockerClient, stack: str, service: str, port: int) -> list[str]:
    """`ADDR:PORT` of every running task of the service: its node's address and published port."""
    found = services(client, stack).get(service)
    if found is None:
        return []
    return sorted(
        f"{task['address']}:{task['ports'][port]}"
        for task in tasks(client, found)
        if task["Status"]["State"] == RUNNING and port in task["ports"]
    )


def scale(client: docker.DockerClient, stack: str, counts: dict[str, int]) -> None:
    present = services(client, stack)
    for name, count in counts.items():
        if name in present:
            present[name].scale(count)


def remove(client: docker.DockerClient, stack: str) -> None:
    """Remove a stack's services and networks (what `docker stack rm` does), without its file."""
    for service in services(client, stack).values():
        try:
            service.remove()
        except docker.errors.NotFound:
            pass
    deadline = time.monotonic() + 30
    for network in client.networks.list(filters={"label": f"{STACK_LABEL}={stack}"}):
        while True:
            try:
                network.remove()
                break
            except docker.errors.NotFound:
                break
            except docker.errors.APIError:
                if time.monotonic() > deadline:
                    break
                time.sleep(0.5)  # its tasks' containers are still going away


def task_rows(client: docker.DockerClient, stack: str) -> list[dict]:
    """Every task Swarm wants running, for `ps` and `status`: service, slot, node, state, when
    it started, and how many tasks of that slot Swarm replaced."""
    rows = []
    for name, service in services(client, stack).items():
        history = service.tasks()
        for task in tasks(client, service):
            slot = task.get("Slot", 1)
            replaced = sum(1 for t in history if t.get("Slot") == slot and t["ID"] != task["ID"])
            state = task["Status"]["State"]
            rows.append(
                {
                    "service": name,
                    "number": slot,
                    "container": task["ID"][:12],
                    "node": task["node"],
                    "state": state,
                    "health": None,
                    "started": task["Status"].get("Timestamp") if state == RUNNING else None,
                    "restarts": replaced,
                }
            )
    return sorted(rows, key=lambda row: (row["service"], row["number"]))


def log_sources(
    client: docker.DockerClient, stack: str, service: str | None
) -> dict[str, docker.models.services.Service]:
    present = services(client, stack)
    return {name: found for name, found in present.items() if service in (None, name)}


class LogLines:
    """A stack's log lines as Swarm sends them with timestamps and details, each told apart by
    the task that wrote it: `web.2@node-3`. Tasks and nodes are read once, when it is made."""

    def __init__(self, client: docker.DockerClient, found: dict[str, docker.models.services.Service]) -> None:
        self.nodes = {node.id: node.attrs["Description"]["Hostname"] for node in client.nodes.list()}
        self.tasks = {task["ID"]: task for service in found.values() for task in service.tasks()}

    def split(self, service: str, raw: bytes) -> tuple[bytes, str, bytes]:
        """The line's time, its task's label, and the line to show (time and text)."""
        stamp, _, rest = raw.partition(b" ")
        detail, _, text = rest.partition(b" ")  # com.docker.swarm.task.id=…,… before the text
        fields = dict(part.split("=", 1) for part in detail.decode(errors="replace").split(",") if "=" in part)
        task = self.tasks.get(fields.get("com.docker.swarm.task.id", ""), {})
        node = self.nodes.get(task.get("NodeID", ""), "?")
        return stamp, f"{service}.{task.get('Slot', '?')}@{node}", stamp + b" " + text


class JobTimeout(MiddockError):
    """A one-off task still running at its timeout (it is removed)."""


def run_job(
    client: docker.DockerClient, stack: str, service: str, image: str, command: list[str], timeout: float = 3600
) -> tuple[int, bytes]:
    """A one-off task of a service's image, environment and networks (a Swarm job); its exit
    code and output. It gets no stdin: a Swarm task has none to give."""
    template = services(client, stack)[service].attrs["Spec"]["TaskTemplate"]
    spec = template["ContainerSpec"]
    networks = [n["Target"] for n in template.get("Networks", [])]
    job = client.services.create(
        image,
        command=command or None,
        env=spec.get("Env", []),
        networks=networks,
        name=f"{stack}_run-{int(time.time() * 1000) % 10**9}",
        mode=docker.types.ServiceMode("replicated-job", replicas=1, concurrency=1),
        restart_policy=docker.types.RestartPolicy(condition="none"),
        labels={STACK_LABEL + ".oneoff": stack},
    )
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            done = [t for t in job.tasks() if t["Status"]["State"] in ("complete", "failed", "rejected")]
            if done:
                status = done[0]["Status"]
                if done[0]["Status"]["State"] == "rejected" or not status.get("ContainerStatus", {}).get("ContainerID"):
                    raise MiddockError(f"the one-off task of {service} did not start: {status.get('Err') or status}")
                output = b"".join(job.logs(stdout=True, stderr=True))
                return int(status.get("ContainerStatus", {}).get("ExitCode", 1)), output
            time.sleep(0.3)
        raise JobTimeout(f"the one-off task of {service} did not finish within {timeout:g}s")
    finally:
        job.remove()


TASK_PORTS_UNIT = "middock-task-ports.service"


def task_ports_rule(manager: str) -> list[str]:
    """The firewall rule (Docker's DOCKER-USER chain) that lets no host but the manager, whose
    edge checks and serves the tasks, open a connection to a task's published port on a node."""
    ipaddress.IPv4Address(manager)
    return ["DOCKER-USER", "-o", "docker_gwbridge", "-m", "conntrack", "--ctstate", "NEW", "!", "-s", manager]


def task_ports_commands(manager: str) -> list[list[str]]:
    """Set the rule once (a second run removes the first copy): iptables argument lists."""
    rule = task_ports_rule(manager)
    return [["iptables", "-D", *rule, "-j", "DROP"], ["iptables", "-I", *rule, "-j", "DROP"]]


def task_ports_unit(manager: str) -> str:
    """The same rule at every boot, once Docker has made its chains."""
    rule = " ".join(task_ports_rule(manager))
    return (
        "# Written by middock: only the Swarm's manager reaches the apps' tasks on this node.\n"
        "[Unit]\n"
        "Description=middock: only the Swarm manager reaches the apps' task ports\n"
        "After=docker.service\n"
        "Requires=docker.service\n\n"
        "[Service]\n"
        "Type=oneshot\n"
        "RemainAfterExit=yes\n"
        f"ExecStartPre=-/usr/sbin/iptables -D {rule} -j DROP\n"
        f"ExecStart=/usr/sbin/iptables -I {rule} -j DROP\n\n"
        "[Install]\n"
        "WantedBy=multi-user.target\n"
    )


def join_script(registry: str, ca_pem: str, pull_password: str, manager: str, join_argv: list[str]) -> str:
    """What an admin runs as root on a new server: it trusts the registry (its CA, and its pull
    password when middock runs it), lets only the manager reach the tasks there, and joins the
    Swarm. Data goes in base64 or quoted, never as shell text."""

    def write(path: str, text: str) -> str:
        return f"echo {base64.b64encode(text.encode()).decode()} | base64 -d > {shlex.quote(path)}"

    lines = [
        "#!/bin/sh",
        "# Run as root on the new server: it trusts middock's registry, lets only the manager",
        "# reach the apps' tasks here, then joins the Swarm.",
        "set -eu",
    ]
    if ca_pem:
        folder = f"/etc/docker/certs.d/{registry}"
        lines += [f"mkdir -p {shlex.quote(folder)}", write(f"{folder}/ca.crt", ca_pem)]
    if pull_password:
        login = ["docker", "login", "--username", "pull", "--password-stdin", registry]
        lines.append(f"printf '%s\\n' {shlex.quote(pull_password)} | {shlex.join(login)}")
    unit = f"/etc/systemd/system/{TASK_PORTS_UNIT}"
    lines += [
        "iptables -N DOCKER-USER 2>/dev/null || true",
        *(
            f"{shlex.join(argv)}{' 2>/dev/null || true' if argv[1] == '-D' else ''}"
            for argv in task_ports_commands(manager)
        ),
        "if [ -d /run/systemd/system ]; then",
        f"    {write(unit, task_ports_unit(manager))}",
        f"    systemctl daemon-reload && systemctl enable {TASK_PORTS_UNIT}",
        "fi",
        shlex.join(join_argv),
    ]
    return "\n".join(lines) + "\n"
