"""A webhook receiver on loopback for the tests of notifications: it keeps every POST."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Post:
    headers: Message
    body: bytes


class Receiver:
    """A webhook receiver on 127.0.0.1 that keeps every POST; it answers with `statuses` in turn
    (then 200), each after the next of `delays` seconds (then at once)."""

    def __init__(self, statuses: tuple[int, ...] = (), delays: tuple[float, ...] = ()) -> None:
        self.posts: list[Post] = []
        self.statuses, self.delays = list(statuses), list(delays)
        self.arrived = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver.arrived:
                    receiver.posts.append(Post(self.headers, body))
                    status = receiver.statuses.pop(0) if receiver.statuses else 200
                    delay = receiver.delays.pop(0) if receiver.delays else 0.0
                    receiver.arrived.notify_all()
                time.sleep(delay)
                try:
                    self.send_response(status)
                    self.send_header("Location", "http://127.0.0.1:9/elsewhere")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:  # the sender gave up waiting
                    pass

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def wait(self, count: int, timeout: float = 15) -> list[Post]:
        with self.arrived:
            assert self.arrived.wait_for(lambda: len(self.posts) >= count, timeout), (
                f"{len(self.posts)} of {count} posts arrived"
            )
            return list(self.posts)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
