"""The api service: searches the index of the standard library that its image's build made
(index.py), and answers in JSON.

    GET /search?q=urlopen           [{"qualname": "urlopen", "module": "urllib.request", ...}, ...]
    GET /search?q=urlopen&code=1    the same, where their source has the words
    GET /health             {"ok": true, "version": "<the image's tag>"}

In development: python3 api/index.py api/symbols.db && python3 api/api.py
"""

import json
import os
import re
import signal
import sqlite3
import sys
from pathlib import Path
from socketserver import ThreadingMixIn
from urllib.parse import parse_qs
from wsgiref.simple_server import WSGIServer, make_server

DATABASE = Path(os.environ.get("INDEX", Path(__file__).resolve().parent / "symbols.db"))
VERSION = os.environ.get("VERSION", "dev")
FIELDS = ("name", "qualname", "module", "kind", "signature", "summary", "line")
LIMIT = 50


def search(words: str, db: sqlite3.Connection, code: bool = False) -> list[dict]:
    """The symbols whose name or summary (or `code`: source) has every word (a word's start is
    enough): those named exactly as asked first, then the best matches."""
    terms = re.findall(r"\w+", words)
    if not terms:
        return []
    columns = "source" if code else "name qualname summary"
    query = " ".join(f'"{term}"*' for term in terms)
    rows = db.execute(
        f"SELECT {', '.join(FIELDS)} FROM symbols WHERE symbols MATCH ?1"
        " ORDER BY lower(qualname) = lower(?2) DESC, lower(name) = lower(?2) DESC, bm25(symbols, 10, 5) LIMIT ?3",
        (f"{{{columns}}}: ({query})", words.strip(), LIMIT),
    )
    return [dict(zip(FIELDS, row, strict=True)) for row in rows]


def application(environ, start_response):
    path = environ.get("PATH_INFO")
    if path == "/health":
        body, status = {"ok": True, "version": VERSION}, "200 OK"
    elif path == "/search":
        query = parse_qs(environ.get("QUERY_STRING", ""))
        with sqlite3.connect(f"file:{DATABASE}?mode=ro", uri=True) as db:
            body, status = search(query.get("q", [""])[0], db, query.get("code") == ["1"]), "200 OK"
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
        print(f"api listening on :{port}, searching {DATABASE}", flush=True)
        server.serve_forever()
