"""The dashboard: a read-mostly web page of the server's apps, served by the server itself.

`sessions` (one-time links, signed cookies, CSRF), `views` (what each page shows, as plain
data), `display` (its words), `web` (the Starlette app: pages, event streams, three actions),
`serve` (uvicorn until idle) and `units` (systemd socket activation). The web stack is imported
only by `web` and `serve`, so no other command pays for it.
"""
