"""The api service: a JSON API that counts visits (in memory, so a new release starts again at
one; keep real state in a database outside Docker).

In development: python3 api.py, then curl -X POST http://127.0.0.1:8000/visits
"""

import json
import os
import signal
import sys
import threading
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIServer, make_server

visits = 0
lock = threading.Lock()


def application(environ, start_response):
    global visits
    path, method = environ.get("PATH_INFO"), environ.get("REQUEST_METHOD")
    if path == "/health":
        body, status = {"ok": True}, "200 OK"
    elif path == "/visits" and method == "POST":
        with lock:
            visits += 1
            body, status = {"visits": visits}, "200 OK"
    else:
        body, status = {"error": "not found"}, "404 Not Found"
    start_response(status, [("Content-Type", "application/json")])
    return [json.dumps(body).encode() + b"\n"]


class Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    port = int(os.environ.get("PORT", "8000"))
    with make_server("0.0.0.0", port, application, server_class=Server) as server:
        print(f"api listening on :{port}", flush=True)
        server.serve_forever()
