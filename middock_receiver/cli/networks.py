"""`networks`: the addresses a service on the host sees the apps' containers at, for a database
outside Docker (its listen_addresses and pg_hba.conf) and a host firewall."""

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
    privileges="none",
)
def cmd_networks(args: argparse.Namespace) -> int:
    host = addresses.host_gateway(docker_client())
    data = {"from": [str(subnet) for subnet in addresses.sources()], "host": host}
    if args.json:
        return emit_json(data)
    print("=== The apps' containers on this server")
    for subnet in data["from"]:
        print(f"Connect from:   {subnet}")
    print(f"Reach host at:  {host or 'nothing: Docker runs without its default bridge'} (host.docker.internal)")
    return 0
