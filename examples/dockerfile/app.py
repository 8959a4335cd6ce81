"""A one-file web app: a WSGI application served by the standard library on the port it is
given (PORT, as on Heroku; 8000 by default).

In development: python3 app.py, then open http://127.0.0.1:8000
"""

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
    greeting = html.escape(os.environ.get("GREETING", "Hello from a Dockerfile"))
    page = f"<!doctype html><title>{greeting}</title><h1>{greeting}</h1><p>answered by {socket.gethostname()}</p>\n"
    start_response("200 OK", [("Content-Type", "text/html; charset=utf-8")])
    return [page.encode()]


class Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # `docker stop`: exit now, not after 10 s
    port = int(os.environ.get("PORT", "8000"))
    with make_server("0.0.0.0", port, application, server_class=Server) as server:
        print(f"listening on :{port}", flush=True)
        server.serve_forever()
