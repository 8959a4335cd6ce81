"""The web service: the page, with a visit number it asks the api service for (API_URL).

In development: python3 ../api/api.py & API_URL=http://127.0.0.1:8000 python3 web.py,
then open http://127.0.0.1:8080
"""

import html
import json
import os
import signal
import sys
import urllib.request
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIServer, make_server

API_URL = os.environ.get("API_URL", "http://127.0.0.1:8000")


def application(environ, start_response):
    if environ.get("PATH_INFO") == "/health":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok\n"]
    with urllib.request.urlopen(urllib.request.Request(f"{API_URL}/visits", method="POST"), timeout=5) as reply:
        visit = json.load(reply)["visits"]
    greeting = html.escape(os.environ.get("GREETING", "Hello"))
    version = html.escape(os.environ.get("APP_VERSION", "dev"))
    page = (
        f"<!doctype html><title>{greeting}</title><h1>{greeting}</h1>"
        f"<p>visit {visit}, counted by the api service</p><footer>version {version}</footer>\n"
    )
    start_response("200 OK", [("Content-Type", "text/html; charset=utf-8")])
    return [page.encode()]


class Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    port = int(os.environ.get("PORT", "8080"))
    with make_server("0.0.0.0", port, application, server_class=Server) as server:
        print(f"web listening on :{port}", flush=True)
        server.serve_forever()
