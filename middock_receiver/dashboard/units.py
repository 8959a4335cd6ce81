"""The dashboard under systemd: a socket unit that listens on its loopback port for good, and a
service unit that systemd starts, as the deploy user, at the first connection (socket
activation: the socket is its fd 3) and that exits once idle (serve.py)."""

from __future__ import annotations

import sys
from pathlib import Path

from ..server import daemons
from ..server.daemons import UNIT_DIR, Owner


def unit_names(owner: Owner) -> tuple[str, str]:
    """(socket, service) of the owner's dashboard."""
    base = f"middock-dashboard-{owner.name}"
    return f"{base}.socket", f"{base}.service"


def render_socket(owner: Owner, port: int) -> str:
    return (
        f"# Written by middock for the dashboard of {owner.name}; middock rewrites it.\n"
        "[Unit]\n"
        f"Description=middock dashboard of {owner.name} (its socket)\n\n"
        "[Socket]\n"
        f"ListenStream=127.0.0.1:{port}\n"
        "NoDelay=true\n\n"
        "[Install]\n"
        "WantedBy=sockets.target\n"
    )


def render_service(owner: Owner, python: str = sys.executable) -> str:
    socket_unit, _ = unit_names(owner)
    return (
        f"# Written by middock for the dashboard of {owner.name}; middock rewrites it.\n"
        "[Unit]\n"
        f"Description=middock dashboard of {owner.name}\n"
        f"Requires={socket_unit}\n"
        f"After={socket_unit}\n\n"
        "[Service]\n"
        "Type=simple\n"
        f"User={owner.name}\n"
        f"Group={owner.gid}\n"
        f'Environment="MIDDOCK_HOME={owner.home}"\n'
        f"WorkingDirectory={owner.home}\n"
        f"ExecStart={python} -I -m middock_receiver dashboard:serve\n"
        "NoNewPrivileges=yes\n"
        "CapabilityBoundingSet=\n"
        "PrivateTmp=yes\n"
    )


def listening(owner: Owner) -> bool:
    """Whether systemd listens for the owner's dashboard (its socket unit is there): then a
    connection starts it, and nothing else should."""
    return Path("/run/systemd/system").is_dir() and (UNIT_DIR / unit_names(owner)[0]).exists()


def install(owner: Owner, port: int) -> bool:
    """Write both units and listen (again, on `port`); False: no systemd here."""
    if not daemons.uses_systemd(owner):
        return False
    socket_unit, service_unit = unit_names(owner)
    socket_path = UNIT_DIR / socket_unit
    before = socket_path.read_text() if socket_path.exists() else None
    socket_path.write_text(render_socket(owner, port))
    (UNIT_DIR / service_unit).write_text(render_service(owner))
    daemons.systemctl("daemon-reload")
    if before is not None and before != socket_path.read_text():  # a new port: listen there instead
        daemons.systemctl("stop", service_unit, socket_unit)
    daemons.systemctl("enable", "--now", socket_unit)
    return True
