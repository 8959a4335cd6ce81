"""The deploy plan's pure parts, without Docker: which services ask for resource limits, and which
daemons enforce them."""

from __future__ import annotations

from types import SimpleNamespace

from middock_receiver.runtime.engine import enforces_limits
from middock_receiver.runtime.plan import resource_limited


def test_the_services_asking_for_limits_by_their_own_keys_or_deploy_resources():
    resolved = {
        "services": {
            "web": {"image": "a", "mem_limit": "67108864"},
            "worker": {"image": "b", "deploy": {"resources": {"limits": {"cpus": "0.5"}}}},
            "cron": {"image": "c", "deploy": {"resources": {}}, "cpus": 0},
            "db": {"image": "d", "deploy": {"replicas": 1}},
        }
    }
    assert resource_limited(resolved) == ["web", "worker"]


def test_only_a_rootless_daemon_on_cgroup_v1_leaves_limits_unenforced():
    def daemon(security: list[str], cgroup: str) -> SimpleNamespace:
        return SimpleNamespace(info=lambda: {"SecurityOptions": security, "CgroupVersion": cgroup})

    rootless = ["name=seccomp,profile=default", "name=rootless"]
    assert not enforces_limits(daemon(rootless, "1"))
    assert enforces_limits(daemon(rootless, "2"))
    assert enforces_limits(daemon(["name=seccomp,profile=default"], "1"))
