"""The web service: the site its image's build rendered (render.py) at /docs/, an index of it at
/, and the search, which asks the api service (API_URL) and links each result to its page.

In development: python3 web/render.py web/site && API_URL=http://127.0.0.1:8000 python3 web/web.py
"""

import html
import json
import os
import signal
import sys
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

SITE = Path(os.environ.get("SITE", Path(__file__).resolve().parent / "site"))
API_URL = os.environ.get("API_URL", "http://api:8000")
TITLE = os.environ.get("TITLE", "The standard library")
VERSION = os.environ.get("VERSION", "dev")
STYLE = "body{font-family:sans-serif;max-width:60em;margin:2em auto}dt{margin-top:.6em}code{font-size:1.05em}"


def ask_api(path: str):
    with urllib.request.urlopen(API_URL + path, timeout=5) as response:
        return json.load(response)


def page(title: str, body: str) -> bytes:
    try:
        api = f"api {html.escape(ask_api('/health')['version'])}"
    except (OSError, ValueError, KeyError):
        api = "the api is not answering"
    form = '<form action=/search><input name=q placeholder="a function, a class"> <button>Search</button></form>'
    return (
        f"<!doctype html><meta charset=utf-8><title>{html.escape(title)}</title><style>{STYLE}</style>"
        f"<h1><a href=/>{html.escape(TITLE)}</a></h1>{form}{body}"
        f"<hr><small>web {html.escape(VERSION)}, {api}</small>\n"
    ).encode()


def index() -> bytes:
    summaries = json.loads((SITE / "index.json").read_text())
    items = "".join(
        f"<dt><a href=/docs/{name}.html>{name}</a><dd>{html.escape(summary)}" for name, summary in summaries.items()
    )
    return page(TITLE, f"<dl>{items}</dl>")


def results(words: str) -> bytes:
    documented = set(json.loads((SITE / "index.json").read_text()))
    found = ask_api("/search?" + urllib.parse.urlencode({"q": words}))
    items = []
    for row in found:
        name = html.escape(f"{row['module']}.{row['qualname']}{row['signature']}")
        anchor = f"-{row['qualname']}" if row["kind"] == "function" else row["qualname"].replace(".", "-")  # pydoc's
        if row["module"] in documented:
            name = f"<a href=/docs/{row['module']}.html#{anchor}>{name}</a>"
        items.append(f"<dt><code>{name}</code> <small>{row['kind']}</small><dd>{html.escape(row['summary'])}")
    body = f"<p>{len(found)} found for <b>{html.escape(words)}</b></p><dl>{''.join(items)}</dl>"
    return page(f"{words}: search", body)


class Web(BaseHTTPRequestHandler):
    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        try:
            if url.path == "/health":
                ask_api("/health")
                self.reply(200, "text/plain", b"ok\n")
            elif url.path == "/":
                self.reply(200, "text/html; charset=utf-8", index())
            elif url.path == "/search":
                words = urllib.parse.parse_qs(url.query).get("q", [""])[0]
                self.reply(200, "text/html; charset=utf-8", results(words))
            elif url.path.startswith("/docs/") and url.path.endswith(".html"):
                self.document(url.path.removeprefix("/docs/"))
            else:
                self.reply(404, "text/plain", b"not found\n")
        except OSError as error:
            self.reply(502, "text/plain", f"the api is not answering: {error}\n".encode())

    def document(self, name: str):
        """A rendered page, gzipped where the browser takes it (the build compressed it once)."""
        path = SITE / name
        if "/" in name or not path.is_file():
            self.reply(404, "text/plain", b"no page for that module here: search for it instead\n")
        elif "gzip" in self.headers.get("Accept-Encoding", ""):
            self.reply(200, "text/html; charset=utf-8", path.with_name(name + ".gz").read_bytes(), gzip=True)
        else:
            self.reply(200, "text/html; charset=utf-8", path.read_bytes())

    def reply(self, status, content_type, body, gzip=False):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        if gzip:
            self.send_header("Content-Encoding", "gzip")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    port = int(os.environ.get("PORT", "8080"))
    with ThreadingHTTPServer(("0.0.0.0", port), Web) as server:
        print(f"web listening on :{port}, api at {API_URL}", flush=True)
        server.serve_forever()
