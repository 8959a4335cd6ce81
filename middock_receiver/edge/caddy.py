"""Caddy, the part of the edge that owns ports 80 and 443: TLS for the apps' domains, with
certificates it gets by itself (ACME), and plain HTTP, which HAProxy redirects to HTTPS.

Caddy's configuration depends on the edge's settings alone, never on the apps or their domains:
it hands every request to HAProxy (two unix sockets), which knows the domains, and it gets a
certificate for a name on demand, at the first TLS handshake for it, once HAProxy's `_ask`
frontend says the name is an app's domain (`domains:add` makes that first handshake itself). So
adding or removing a domain never reloads Caddy, and never closes a client's kept-alive
connection. Its JSON configuration is rendered here (pure functions); the admin API listens on a
unix socket only, and nothing is ever written to the system's trust store.
"""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

from .. import process
from ..errors import MiddockError
from .settings import EdgePaths, EdgeSettings

LETS_ENCRYPT = "https://acme-v02.api.letsencrypt.org/directory"
PROGRAM = "/usr/bin/caddy"


def issuer(settings: EdgeSettings) -> dict:
    if settings.tls == "internal":
        return {"module": "internal"}
    found: dict = {"module": "acme", "ca": settings.acme_ca or LETS_ENCRYPT}
    if settings.acme_email:
        found["email"] = settings.acme_email
    if settings.acme_ca_root:
        found["trusted_roots_pem_files"] = [settings.acme_ca_root]
    return found


def to_haproxy(socket_path: Path, proto: str) -> list[dict]:
    """Hand the request to HAProxy as it came (its Host), saying which scheme the client used."""
    return [
        {
            "handle": [
                {
                    "handler": "reverse_proxy",
                    "upstreams": [{"dial": f"unix/{socket_path}"}],
                    "headers": {"request": {"set": {"X-Forwarded-Proto": [proto]}}},
                }
            ]
        }
    ]


def dashboard_routes(settings: EdgeSettings) -> tuple[list[dict], list[dict]]:
    """(HTTPS, HTTP) routes of the dashboard's domain, if it has one: over HTTPS to its loopback
    port, over HTTP a redirect to HTTPS (it is never served in the clear)."""
    if not settings.dashboard or settings.tls == "off":
        return [], []
    host = [{"host": [settings.dashboard]}]
    proxy = {
        "handler": "reverse_proxy",
        "upstreams": [{"dial": f"127.0.0.1:{settings.dashboard_port}"}],
        "headers": {"request": {"set": {"X-Forwarded-Proto": ["https"]}}},
    }
    suffix = "" if settings.https_port == 443 else f":{settings.https_port}"
    redirect = {
        "handler": "static_response",
        "status_code": 308,
        "headers": {"Location": [f"https://{settings.dashboard}{suffix}{{http.request.uri}}"]},
    }
    return [{"match": host, "handle": [proxy], "terminal": True}], [
        {"match": host, "handle": [redirect], "terminal": True}
    ]


def render(settings: EdgeSettings, paths: EdgePaths, ask_port: int) -> dict:
    """Caddy's whole configuration: with TLS, HTTPS on the HTTPS port (a certificate for any
    name HAProxy vouches for) and plain HTTP on the HTTP port; with TLS off, HTTP alone."""
    dashboard_https, dashboard_http = dashboard_routes(settings)
    plain_socket = paths.domains_socket if settings.tls == "off" else paths.domains_http_socket
    servers: dict = {
        "http": {
            "listen": [f":{settings.http_port}"],
            "routes": dashboard_http + to_haproxy(plain_socket, "http"),
            "automatic_https": {"disable": True},
        }
    }
    config: dict = {
        "admin": {"listen": f"unix/{paths.caddy_socket}", "config": {"persist": False}},
        "storage": {"module": "file_system", "root": str(paths.caddy_data)},
        "logging": {
            "logs": {
                "default": {"level": "WARN", "writer": {"output": "file", "filename": str(paths.logs / "caddy.log")}}
            }
        },
        "apps": {
            "http": {
                "http_port": settings.http_port,
                "https_port": settings.https_port,
                "grace_period": "10s",
                "servers": servers,
            },
            "pki": {"certificate_authorities": {"local": {"install_trust": False}}},
        },
    }
    if settings.tls == "off":
        return config
    servers["https"] = {
        "listen": [f":{settings.https_port}"],
        "routes": dashboard_https + to_haproxy(paths.domains_socket, "https"),
        "tls_connection_policies": [{}],
        "automatic_https": {"disable_redirects": True},
    }
    policies = [{"issuers": [issuer(settings)], "on_demand": True, "disable_ocsp_stapling": True}]
    ask = {"ask": f"http://127.0.0.1:{ask_port}/ask"}
    config["apps"]["tls"] = {"automation": {"policies": policies, "on_demand": ask}}
    if settings.dashboard:  # its certificate is got at once, not at a first handshake HAProxy would vouch for
        own = {"subjects": [settings.dashboard], "issuers": [issuer(settings)], "disable_ocsp_stapling": True}
        policies.insert(0, own)
        config["apps"]["tls"]["certificates"] = {"automate": [settings.dashboard]}
    return config


def dumps(config: dict) -> str:
    return json.dumps(config, indent=2) + "\n"


def certificate(paths: EdgePaths, name: str) -> str:
    """What Caddy holds for a domain: "valid until …" with its issuer, or "pending"."""
    found = sorted(paths.caddy_data.glob(f"certificates/*/{name}/{name}.crt"), key=lambda p: p.stat().st_mtime)
    if not found:
        return "pending"
    result = process.capture(["openssl", "x509", "-noout", "-enddate", "-issuer", "-in", str(found[-1])])
    fields = dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
    until = fields.get("notAfter", "?").strip()
    issuer = found[-1].parent.parent.name
    return f"valid until {until} ({issuer})"


def forget_certificate(paths: EdgePaths, name: str) -> None:
    """Delete a name's certificate from Caddy's storage, so a restart no longer serves it (Caddy
    keeps the one it holds in memory until then: the name only answers 404 meanwhile)."""
    for folder in paths.caddy_data.glob(f"certificates/*/{name}"):
        if folder.is_dir() and not folder.is_symlink():
            shutil.rmtree(folder)


class Admin:
    def __init__(self, path: Path, timeout: float = 60) -> None:
        self.path = path
        self.timeout = timeout

    def request(self, method: str, url: str, body: str | None = None) -> tuple[int, str]:
        """HTTP on Caddy's unix socket (http.client imported here: most commands never ask Caddy)."""
        import http.client

        conn = http.client.HTTPConnection("", timeout=self.timeout)  # an empty Host: all Caddy allows on a socket
        try:
            conn.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            conn.sock.settimeout(self.timeout)
            conn.sock.connect(str(self.path))
            conn.request(method, url, body=body, headers={"Content-Type": "application/json"} if body else {})
            response = conn.getresponse()
            return response.status, response.read().decode(errors="replace")
        except OSError as error:
            raise MiddockError(f"the edge's Caddy does not answer on {self.path} ({error.strerror or error})") from None
        finally:
            conn.close()

    def answers(self) -> bool:
        try:
            return self.request("GET", "/config/")[0] == 200
        except MiddockError:
            return False

    def stop(self) -> None:
        """Caddy exits (its supervisor, systemd or middock, starts it again)."""
        self.request("POST", "/stop")

    def load(self, config: str) -> None:
        status, text = self.request("POST", "/load", config)
        if status != 200:
            try:
                text = json.loads(text).get("error", text)
            except ValueError:
                pass
            raise MiddockError(f"Caddy refused the edge's configuration: {text.strip()[:300]}")


def tls_of(config: str) -> str:
    """The part of a rendered configuration that says how certificates are got."""
    try:
        return json.dumps(json.loads(config).get("apps", {}).get("tls"), sort_keys=True)
    except ValueError:
        return ""


def check_config(path: Path) -> None:
    """`caddy validate` on a rendered configuration; a refusal is Caddy's own message."""
    result = process.capture([PROGRAM, "validate", "--config", str(path)], cwd=path.parent)
    if result.returncode != 0:
        lines = (result.stderr + result.stdout).strip().splitlines()
        problem = next((line for line in reversed(lines) if line.startswith("Error:")), lines[-1] if lines else "")
        raise MiddockError(f"the edge's Caddy configuration is invalid: {problem or 'caddy validate said nothing'}")


def first_handshake(https_port: int, name: str, timeout: float) -> str | None:
    """A TLS handshake for `name` on the edge, which makes Caddy get its certificate now rather
    than at a visitor's first request; None once it serves one, else why not."""
    import ssl  # only here: most commands never make a TLS connection

    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # any certificate will do: this only asks Caddy to get one
    try:
        with (
            socket.create_connection(("127.0.0.1", https_port), timeout=timeout) as raw,
            context.wrap_socket(raw, server_hostname=name),
        ):
            return None
    except (OSError, ssl.SSLError) as error:
        return str(error) or error.__class__.__name__
