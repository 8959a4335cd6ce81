"""Pages: GET one, retried while the server starts."""

from __future__ import annotations

import time
import urllib.request


def http_get(port: int, path: str = "/", timeout: float = 10) -> str:
    """The page at 127.0.0.1:port, retried briefly while the server starts."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as response:
                return response.read().decode()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
