"""Caddy, the part of the edge that owns ports 80 and 443: the apps' domains, their
certificates (ACME, automatically), and the redirect from HTTP to HTTPS.

Caddy forwards each domain to its app's HAProxy frontend on loopback, so it never needs to
change during a deploy: it is reloaded only when domains or edge settings change. Its JSON
configuration is rendered here from middock's records (pure functions); the admin API listens
on a unix socket only, and nothing is ever written to the system's trust store.
"""

from __future__ import annotations

import http.client
import json
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from .. import process
from ..errors import MiddockError
from .settings import EdgePaths, EdgeSettings

LETS_ENCRYPT = "https://acme-v02.api.letsencrypt.org/directory"
NOT_FOUND = {"handle": [{"handler": "static_response", "status_code": 404, "body": "no app answers for this name\n"}]}


@dataclass(frozen=True)
class Site:
    """An app's domains, served by its HAProxy frontend on loopback `port`."""

    app: str
    domains: tuple[str, ...]
    port: int


def issuer(settings: EdgeSettings) -> dict:
    if settings.tls == "internal":
        return {"module": "internal"}
    found: dict = {"module": "acme", "ca": settings.acme_ca or LETS_ENCRYPT}
    if settings.acme_email:
        found["email"] = settings.acme_email
    if settings.acme_ca_root:
        found["trusted_roots_pem_files"] = [settings.acme_ca_root]
    return found


def render(sites: list[Site], settings: EdgeSettings, paths: EdgePaths) -> dict:
    """Caddy's whole configuration. With no domain it listens nowhere; with TLS it serves the
    domains on the HTTPS port and redirects them there from the HTTP port (a redirect of our
    own, because Caddy 2.6 leaves a non-default HTTPS port out of its automatic one)."""
    domains = [name for site in sites for name in site.domains]
    routes = [
        {
            "match": [{"host": list(site.domains)}],
            "handle": [{"handler": "reverse_proxy", "upstreams": [{"dial": f"127.0.0.1:{site.port}"}]}],
            "terminal": True,
        }
        for site in sites
    ]
    servers: dict = {}
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
    if not domains:
        return config
    if settings.tls == "off":
        servers["http"] = {
            "listen": [f":{settings.http_port}"],
            "routes": [*routes, NOT_FOUND],
            "automatic_https": {"disable": True},
        }
        return config
    servers["https"] = {
        "listen": [f":{settings.https_port}"],
        "routes": [*routes, NOT_FOUND],
        "automatic_https": {"disable_redirects": True},
    }
    port = "" if settings.https_port == 443 else f":{settings.https_port}"
    servers["redirect"] = {
        "listen": [f":{settings.http_port}"],
        "routes": [
            {
                "match": [{"host": domains}],
                "handle": [
                    {
                        "handler": "static_response",
                        "status_code": 308,
                        "headers": {"Location": [f"https://{{http.request.host}}{port}{{http.request.uri}}"]},
                    }
                ],
                "terminal": True,
            },
            NOT_FOUND,
        ],
        "automatic_https": {"disable": True},
    }
    config["apps"]["tls"] = {
        "automation": {
            "policies": [{"subjects": domains, "issuers": [issuer(settings)], "disable_ocsp_stapling": True}]
        }
    }
    return config


def dumps(config: dict) -> str:
    return json.dumps(config, indent=2) + "\n"


def has_account(paths: EdgePaths) -> bool:
    return any(paths.caddy_data.glob("acme/*/users/*/*.json"))


def wait_for_account(paths: EdgePaths, timeout: float = 30) -> None:
    """Until Caddy has registered its ACME account (or the timeout: the CA may be away)."""
    deadline = time.monotonic() + timeout
    while not has_account(paths) and time.monotonic() < deadline:
        time.sleep(0.2)


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


class UnixConnection(http.client.HTTPConnection):
    """HTTP to Caddy's admin API on its unix socket."""

    def __init__(self, path: Path, timeout: float) -> None:
        super().__init__("", timeout=timeout)  # an empty Host: the only origin Caddy allows on a unix socket
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(str(self.path))


class Admin:
    def __init__(self, path: Path, timeout: float = 60) -> None:
        self.path = path
        self.timeout = timeout

    def request(self, method: str, url: str, body: str | None = None) -> tuple[int, str]:
        conn = UnixConnection(self.path, self.timeout)
        try:
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

    def load(self, config: str) -> None:
        status, text = self.request("POST", "/load", config)
        if status != 200:
            try:
                text = json.loads(text).get("error", text)
            except ValueError:
                pass
            raise MiddockError(f"Caddy refused the edge's configuration: {text.strip()[:300]}")
