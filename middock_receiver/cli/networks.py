"""`networks`: the addresses a service on the host sees the apps' containers at, for a database
outside Docker (its listen_addresses and pg_hba.conf) and a host firewall: those of the deploy
user's daemon (its own rootless one, or the root daemon)."""

from __future__ import annotations

import argparse

from ..runtime import addresses
from ..runtime.engine import docker_client
from .commands import command, emit_json


@command(
    "networks",
    "the addresses app containers connect from and reach the host at (pg_hba.conf, listen_addresses)",
    app=False,
    json=True,
)  # as the user (root: as the deploy user), so that it speaks of the user's own daemon
def cmd_networks(args: argparse.Namespace) -> int:
    data = addresses.for_apps(docker_client())
    if args.json:
        return emit_json(data)
    kind = "rootless Docker: through slirp4netns, from the host itself" if data["rootless"] else "the root daemon"
    print(f"=== The apps' containers on this server ({kind})")
    for subnet in data["from"]:
        print(f"Connect from:   {subnet}")
    missing = "nothing: the host has no address on a network" if data["rootless"] else "nothing: no default bridge"
    print(f"Reach host at:  {data['host'] or missing} (host.docker.internal)")
    return 0
