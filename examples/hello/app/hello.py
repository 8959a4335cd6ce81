"""The example's app service: a WSGI application (what gunicorn serves in the seed's setup),
run here by the standard library's server so the example needs no package.

In development: python3 app/hello.py, then open http://127.0.0.1:8000
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
    greeting = html.escape(os.environ.get("GREETING", "Hello"))
    release = html.escape(os.environ.get("RELEASE", "dev"))
    page = (
        "<!doctype html><title>hello</title><link rel=stylesheet href=/static/style.css>"
        f"<h1>{greeting}</h1><p>release {release}, answered by {socket.gethostname()}</p>\n"
    )
    start_response("200 OK", [("Content-Type", "text/html; charset=utf-8")])
    return [page.encode()]


class Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    port = int(os.environ.get("PORT", "8000"))
    with make_server("0.0.0.0", port, application, server_class=Server) as server:
        print(f"app listening on :{port}", flush=True)
        server.serve_forever()
