"""The example's frontend (nginx's place in the seed's setup): serves static/ at /static/,
answers /healthz itself, and passes every other request to the app service.

In development: APP_URL=http://127.0.0.1:8000 PORT=8080 python3 frontend/serve.py
"""

import os
import signal
import sys
import urllib.error
import urllib.request
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

STATIC = Path(__file__).resolve().parent / "static"
APP_URL = os.environ.get("APP_URL", "http://app:8000")


class Frontend(SimpleHTTPRequestHandler):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, directory=str(STATIC), **kwargs)

    def do_GET(self):
        if self.path == "/healthz":
            self.reply(200, "text/plain", b"ok\n")
        elif self.path.startswith("/static/"):
            self.path = self.path[len("/static") :]
            super().do_GET()
        else:
            self.proxy()

    def proxy(self):
        try:
            with urllib.request.urlopen(APP_URL + self.path, timeout=10) as response:
                self.reply(response.status, response.headers.get("Content-Type", "text/plain"), response.read())
        except urllib.error.HTTPError as error:
            self.reply(error.code, error.headers.get("Content-Type", "text/plain"), error.read())
        except OSError as error:
            self.reply(502, "text/plain", f"the app is not answering: {error}\n".encode())

    def reply(self, status, content_type, body):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    port = int(os.environ.get("PORT", "8080"))
    with ThreadingHTTPServer(("0.0.0.0", port), Frontend) as server:
        print(f"frontend listening on :{port}, app at {APP_URL}", flush=True)
        server.serve_forever()
