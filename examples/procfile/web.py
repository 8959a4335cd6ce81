"""The web process: a WSGI application served by the standard library on the port of the
Procfile's command line (`--port $PORT`).

In development: python3 web.py --port 5000, then open http://127.0.0.1:5000
"""

import argparse
import html
import os
import signal
import socket
import sys
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIServer, make_server


def application(environ, start_response):
    if environ.get("PATH_INFO") == "/health":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok\n"]
    greeting = html.escape(os.environ.get("GREETING", "Hello from a Procfile"))
    page = (
        f"<!doctype html><title>{greeting}</title><h1>{greeting}</h1>"
        f"<p>web process on {socket.gethostname()}; the worker logs a heartbeat beside it</p>\n"
    )
    start_response("200 OK", [("Content-Type", "text/html; charset=utf-8")])
    return [page.encode()]


class Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "5000")))
    port = parser.parse_args().port
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with make_server("0.0.0.0", port, application, server_class=Server) as server:
        print(f"web listening on :{port}", flush=True)
        server.serve_forever()
