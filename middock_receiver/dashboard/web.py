"""The dashboard's web app (Starlette): its pages, its event streams and its three actions.

Every page needs a session (sessions.py) whose key still holds the app (its role and apps are
read from the keys file on every request, so a key removed or narrowed is obeyed at once). An
action (rollback, restart, maintenance) is a POST with the session's CSRF token from a page of
this very origin, and runs as the SSH key would have run it: through `ssh-serve` with the key's
grant, so its role is checked and the audit log names the key. Everything that came from a push
is escaped by the templates (Jinja2's autoescape) or written with `textContent` by the script;
no page has an inline script, and the Content-Security-Policy says so.
"""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import shlex
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from urllib.parse import parse_qs

from jinja2 import Environment, PackageLoader, select_autoescape
from sse_starlette.sse import EventSourceResponse
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from .. import __version__
from ..server import account, keys
from ..server.roles import ADMIN, Grant, refusal
from ..state import releases
from ..state.apps import APP_NAME, App
from . import display, sessions, views

COOKIE = "middock_session"
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",  # no-referrer would make the browser send `Origin: null` with a form
    "Cache-Control": "no-store",
}
POLL = 0.1  # seconds between two looks at a deploy's output
RECORDS_POLL = 1.0  # seconds between two looks at the apps' records (for 100 apps a look takes ~20 ms)
ACTION_TIMEOUT = 900.0
FORM_MAX = 4096
ACTIONS = {  # the form's action -> the middock command it runs
    "rollback": lambda app, form: ["rollback", app, str(int(form.get("release", "")))],
    "restart": lambda app, form: ["ps:restart", app],
    "maintenance-on": lambda app, form: ["maintenance:on", app],
    "maintenance-off": lambda app, form: ["maintenance:off", app],
}
TEMPLATES = Environment(loader=PackageLoader(__package__, "templates"), autoescape=select_autoescape(default=True))
TEMPLATES.filters.update(when=display.when, ago=display.ago, seconds=display.seconds, size=display.size)


class Activity:
    """Requests in flight and the last moment one ended: the server exits once idle (serve.py)."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.last = time.monotonic()

    def idle_for(self) -> float:
        return 0.0 if self.in_flight else time.monotonic() - self.last


def with_headers(app: Callable, activity: Activity) -> Callable:
    """ASGI middleware: the security headers on every response, and the activity count (an open
    event stream counts as someone looking)."""

    async def middleware(scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return await app(scope, receive, send)

        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                given = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(k.lower().encode(), v.encode()) for k, v in HEADERS.items()]
                extra = [(k, v) for k, v in extra if k not in given]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        activity.in_flight += 1
        try:
            await app(scope, receive, send_with_headers)
        finally:
            activity.in_flight -= 1
            activity.last = time.monotonic()

    return middleware


def page(name: str, status: int = 200, **context: object) -> HTMLResponse:
    return HTMLResponse(TEMPLATES.get_template(name).render(version=__version__, **context), status_code=status)


def secure(request: Request) -> bool:
    """Served over HTTPS: itself, or through the edge's Caddy on this machine."""
    forwarded = request.headers.get("x-forwarded-proto") == "https" and request.client
    return request.url.scheme == "https" or bool(forwarded and request.client.host in ("127.0.0.1", "::1"))


def origin(request: Request) -> str:
    return f"{'https' if secure(request) else 'http'}://{request.headers.get('host', '')}"


class Dashboard:
    """The app for one home: who may look, and what each address answers."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.account = pwd.getpwuid(os.getuid())
        self.user = self.account.pw_name
        self.local = Grant(f"{self.user} (local)", ADMIN)  # a session made on the server, no SSH key

    def grant_of(self, session: sessions.Session) -> Grant | None:
        """The session's key as the keys file has it now (None: removed); the server's own user
        for a session made on the server."""
        if session.key == sessions.LOCAL:
            return self.local
        found = [key for key in keys.listed(account.authorized_keys(self.account)) if key.name == session.key]
        return found[0].grant if found else None

    def session(self, request: Request) -> tuple[Grant, str]:
        """(grant, cookie) of the request's session; else a 401 page saying how to log in."""
        cookie = request.cookies.get(COOKIE)
        found = sessions.session_of(self.home, cookie)
        grant = self.grant_of(found) if found else None
        if grant is None or cookie is None:
            raise HTTPException(401)
        return grant, cookie

    def app(self, request: Request, grant: Grant) -> App:
        """The app the address names, if the key holds it; else 404 (the same answer for an app
        that does not exist, so a key learns nothing of apps it does not hold)."""
        name = request.path_params["app"]
        app = App(name, self.home) if APP_NAME.match(name) else None
        if app is None or not app.exists() or not views.may_see(app, grant):
            raise HTTPException(404)
        return app

    def context(self, grant: Grant, cookie: str) -> dict:
        return {"who": grant.key, "role": grant.describe(), "csrf": sessions.csrf_token(self.home, cookie)}

    # --- pages ---------------------------------------------------------------------------------

    async def login(self, request: Request) -> Response:
        found = sessions.redeem(self.home, request.path_params["token"])
        if found is None or self.grant_of(found) is None:
            return page("login.html", 403, refused=True, user=self.user)
        # A page that moves on by itself rather than a 303: a SameSite=Strict cookie set by a
        # redirect that a click in another program started is not sent with the redirected request.
        response = page("welcome.html", who=found.key or self.user)
        response.set_cookie(
            COOKIE,
            sessions.cookie_value(self.home, found),
            max_age=sessions.SESSION_SECONDS,
            httponly=True,
            secure=secure(request),
            samesite="strict",
        )
        return response

    async def logout(self, request: Request) -> Response:
        response = page("login.html", refused=False, user=self.user, logged_out=True)
        response.delete_cookie(COOKIE)
        return response

    async def apps_page(self, request: Request) -> Response:
        grant, cookie = self.session(request)
        rows = await asyncio.to_thread(views.overview, self.home, grant)
        return page("apps.html", apps=[display.row(row) for row in rows], **self.context(grant, cookie))

    async def app_page(self, request: Request) -> Response:
        grant, cookie = self.session(request)
        app = self.app(request, grant)
        detail = await asyncio.to_thread(views.app_detail, app, grant)
        may_act = refusal(grant, "rollback", (app.name, app.parent or app.name)) is None
        return page("app.html", app=detail, may_act=may_act, **self.context(grant, cookie))

    async def release_page(self, request: Request) -> Response:
        grant, cookie = self.session(request)
        app = self.app(request, grant)
        found = await asyncio.to_thread(views.release_output, app, request.path_params["number"])
        if found is None:
            raise HTTPException(404)
        return page("release.html", app=app.name, found=found, **self.context(grant, cookie))

    async def logs_page(self, request: Request) -> Response:
        grant, cookie = self.session(request)
        app = self.app(request, grant)
        service = request.query_params.get("service", "")
        rows = await asyncio.to_thread(views.containers, app, releases.live(app))
        services = sorted({row["service"] for row in rows})
        return page("logs.html", app=app.name, service=service, services=services, **self.context(grant, cookie))

    async def stats(self, request: Request) -> Response:
        grant, _ = self.session(request)
        app = self.app(request, grant)
        try:
            found = await asyncio.to_thread(views.stats, app)
        except Exception as error:  # noqa: BLE001 - the page says what Docker said
            return JSONResponse({"error": str(error)[:200]})
        return JSONResponse(found)

    # --- event streams -------------------------------------------------------------------------

    async def apps_events(self, request: Request) -> Response:
        """An `app` event with a row's new text whenever an app's row changes."""
        grant, _ = self.session(request)

        async def changes() -> AsyncIterator[dict]:
            seen: dict[str, tuple] = {}
            while True:
                for app in await asyncio.to_thread(views.visible_apps, self.home, grant):
                    signature = await asyncio.to_thread(views.app_signature, app)
                    if seen.setdefault(app.name, signature) != signature:
                        seen[app.name] = signature
                        row = await asyncio.to_thread(views.fresh_row, app)
                        yield {"event": "app", "data": json.dumps(display.row(row))}
                await asyncio.sleep(RECORDS_POLL)

        return EventSourceResponse(changes(), ping=15)

    async def app_events(self, request: Request) -> Response:
        """The output of the app's deploy in progress, line by line (`line`), and `changed` when
        the app's state moves on (the page then reloads)."""
        grant, _ = self.session(request)
        app = self.app(request, grant)

        async def events() -> AsyncIterator[dict]:
            signature = await asyncio.to_thread(views.app_signature, app)
            while True:
                newest = views.newest_release(app)
                if newest and newest.result == releases.DEPLOYING:
                    async for line in release_lines(app, newest.number):
                        yield {"event": "line", "data": json.dumps({"release": newest.number, "text": line})}
                now = await asyncio.to_thread(views.app_signature, app)
                if now != signature:
                    yield {"event": "changed", "data": "{}"}
                    signature = now
                await asyncio.sleep(RECORDS_POLL)

        return EventSourceResponse(events(), ping=15)

    async def release_events(self, request: Request) -> Response:
        """A release's output as it is written, from its first line, until its deploy ends."""
        grant, _ = self.session(request)
        app = self.app(request, grant)
        number = request.path_params["number"]
        if releases.load(app, number) is None:
            raise HTTPException(404)

        async def events() -> AsyncIterator[dict]:
            async for line in release_lines(app, number, skip=int(request.query_params.get("from", "0") or 0)):
                yield {"event": "line", "data": json.dumps({"release": number, "text": line})}
            yield {"event": "done", "data": "{}"}

        return EventSourceResponse(events(), ping=15)

    async def logs_events(self, request: Request) -> Response:
        """`logs -t` of the live release (middock's own command, as the deploy user), a line an event."""
        grant, _ = self.session(request)
        app = self.app(request, grant)
        words = ["logs", app.name, "-t", "-n", "100"]
        service = request.query_params.get("service")
        if service:
            words += ["--service", service]

        async def lines() -> AsyncIterator[dict]:
            child = await asyncio.create_subprocess_exec(
                *middock_argv(words), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
            )
            try:
                assert child.stdout is not None
                async for raw in child.stdout:
                    yield {"event": "line", "data": json.dumps({"text": raw.decode(errors="replace").rstrip("\n")})}
                yield {"event": "done", "data": "{}"}
            finally:
                if child.returncode is None:
                    child.kill()
                    await child.wait()

        return EventSourceResponse(lines(), ping=15)

    # --- actions -------------------------------------------------------------------------------

    async def act(self, request: Request) -> Response:
        """Rollback, restart or maintenance on/off: from this origin, with the session's CSRF
        token, as the session's key."""
        grant, cookie = self.session(request)
        app = self.app(request, grant)
        form = await small_form(request)
        if request.headers.get("origin") != origin(request):
            return page("error.html", 403, message="refused: this action must come from the dashboard's own page")
        if not sessions.csrf_ok(self.home, cookie, str(form.get("csrf", ""))):
            return page("error.html", 403, message="refused: the form is out of date; reload the page and try again")
        action = ACTIONS.get(request.path_params["action"])
        if action is None:
            raise HTTPException(404)
        try:
            words = action(app.name, form)
        except ValueError:
            return page("error.html", 400, message="refused: give a release number")
        code, output = await run_as(grant, words, local=grant == self.local)
        if code != 0:
            return page("error.html", 409, message=f"{shlex.join(words)} failed", output=output)
        return page("done.html", app=app.name, words=shlex.join(words), output=output)

    def routes(self) -> list:
        return [
            Route("/", self.apps_page),
            Route("/events", self.apps_events),
            Route("/login/{token}", self.login),
            Route("/logout", self.logout, methods=["POST"]),
            Route("/apps/{app}", self.app_page),
            Route("/apps/{app}/events", self.app_events),
            Route("/apps/{app}/stats", self.stats),
            Route("/apps/{app}/logs", self.logs_page),
            Route("/apps/{app}/logs/events", self.logs_events),
            Route("/apps/{app}/releases/{number:int}", self.release_page),
            Route("/apps/{app}/releases/{number:int}/events", self.release_events),
            Route("/apps/{app}/{action}", self.act, methods=["POST"]),
            Mount("/static", StaticFiles(packages=[(__package__, "static")]), name="static"),
        ]


async def small_form(request: Request) -> dict[str, str]:
    """A form's fields (application/x-www-form-urlencoded, as our forms send; a few hundred bytes)."""
    body = await request.body()
    if len(body) > FORM_MAX:
        raise HTTPException(413)
    return {key: values[0] for key, values in parse_qs(body.decode(errors="replace")).items()}


async def release_lines(app: App, number: int, skip: int = 0) -> AsyncIterator[str]:
    """The lines of a release's output as they are written, until its deploy has ended and every
    line is read (`skip`: lines already shown)."""
    path = releases.folder(app, number) / "log"
    pending = b""
    offset = 0
    count = 0
    while True:
        finished = (releases.load(app, number) or releases.Release(number, "", "", result="gone")).result
        try:
            with path.open("rb") as log:
                log.seek(offset)
                data = log.read()
        except FileNotFoundError:
            data = b""
        offset += len(data)
        *complete, pending = (pending + data).split(b"\n")
        for raw in complete:
            count += 1
            if count > skip:
                yield raw.decode(errors="replace")
        if finished != releases.DEPLOYING and not data:
            if pending:
                yield pending.decode(errors="replace")
            return
        await asyncio.sleep(POLL)


def middock_argv(words: list[str]) -> list[str]:
    return [sys.executable, "-I", "-m", "middock_receiver", *words]


async def run_as(grant: Grant, words: list[str], local: bool) -> tuple[int, str]:
    """Run a middock command as the session's key would over SSH (its role checked, the audit log
    naming it); a session made on the server (`local`) runs it as the deploy user."""
    env = dict(os.environ)
    if local:
        argv = middock_argv(words)
    else:
        argv = middock_argv(["ssh-serve", "--key", grant.key, "--role", grant.role])
        argv += ["--apps", ",".join(grant.apps)] if grant.apps else []
        env["SSH_ORIGINAL_COMMAND"] = shlex.join(words)
    pipe, devnull = asyncio.subprocess.PIPE, asyncio.subprocess.DEVNULL
    child = await asyncio.create_subprocess_exec(
        *argv, stdout=pipe, stderr=asyncio.subprocess.STDOUT, stdin=devnull, env=env
    )
    try:
        output, _ = await asyncio.wait_for(child.communicate(), ACTION_TIMEOUT)
    except asyncio.TimeoutError:
        child.kill()
        return 1, "it took too long and was stopped"
    return child.returncode or 0, output.decode(errors="replace")


def make_app(home: Path, activity: Activity | None = None) -> Callable[[dict, Callable, Callable], Awaitable[None]]:
    """The ASGI app for `home`, wrapped in the headers and activity middleware."""
    dashboard = Dashboard(home)

    async def not_found(request: Request, error: Exception) -> Response:
        return page("error.html", 404, message="not found: no such app or release here")

    async def unauthorized(request: Request, error: Exception) -> Response:
        return page("login.html", 401, refused=False, user=dashboard.user)

    async def http_error(request: Request, error: HTTPException) -> Response:
        return page("error.html", error.status_code, message=f"{error.status_code}: {error.detail}")

    async def server_error(request: Request, error: Exception) -> Response:
        sys.stderr.write(f"dashboard: {request.url.path}: {type(error).__name__}: {error}\n")
        return page("error.html", 500, message="something went wrong on the server; its log says what")

    handlers: dict = {404: not_found, 401: unauthorized, HTTPException: http_error, Exception: server_error}
    starlette = Starlette(routes=dashboard.routes(), exception_handlers=handlers)
    return with_headers(starlette, activity or Activity())
