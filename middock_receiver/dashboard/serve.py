"""Running the dashboard: uvicorn on the socket systemd hands over (socket activation, fd 3), or
on a loopback port of its own, until no one has looked for a while (MIDDOCK_DASHBOARD_IDLE); then it exits, so it
holds no memory while no one looks. Under systemd the socket stays open meanwhile, and the next
connection starts it again; elsewhere `middock dashboard` starts it when it is not running."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from ..state.apps import write_atomic
from . import sessions

SYSTEMD_FIRST_FD = 3  # sd_listen_fds(3): the first socket systemd passes


def systemd_socket() -> int | None:
    """The socket systemd passed this process, if it did (LISTEN_PID is ours, LISTEN_FDS is 1)."""
    if os.environ.get("LISTEN_PID") != str(os.getpid()) or os.environ.get("LISTEN_FDS") != "1":
        return None
    return SYSTEMD_FIRST_FD


def serve(home: Path, port: int, idle: float) -> None:
    """Serve the dashboard of `home` until idle for `idle` seconds."""
    import uvicorn  # the web stack only for this command

    from .web import Activity, make_app

    activity = Activity()
    fd = systemd_socket()
    where = {"fd": fd} if fd is not None else {"host": "127.0.0.1", "port": port}
    config = uvicorn.Config(
        make_app(home, activity),
        **where,
        log_level="warning",
        access_log=False,
        lifespan="off",
        server_header=False,
        proxy_headers=False,
        timeout_graceful_shutdown=3,
    )
    server = uvicorn.Server(config)

    async def until_idle() -> None:
        while not server.should_exit:
            await asyncio.sleep(min(1.0, idle / 4))
            if activity.idle_for() >= idle:
                server.should_exit = True

    async def main() -> None:
        watcher = asyncio.create_task(until_idle())
        try:
            await server.serve()
        finally:
            watcher.cancel()

    pidfile = sessions.folder(home) / "serve.pid"  # which process serves (tests stop it by this)
    pidfile.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_atomic(pidfile, f"{os.getpid()}\n")
    try:
        asyncio.run(main())
    finally:
        pidfile.unlink(missing_ok=True)
