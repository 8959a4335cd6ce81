"""The registry every Swarm node pulls the apps' images from.

middock runs its own from the distribution's `docker-registry` package, twice over the same
storage: for the nodes, a read-only one on the manager's advertised address, with TLS from a CA
middock keeps (the nodes trust it through `/etc/docker/certs.d/ADDR:PORT/ca.crt`, which
`nodes:join-script` sets up) and a password (`pull`); for middock alone, one on loopback that
takes pushes and deletes (pruning a release deletes its images), with a password of its own
(`push`). Without a password both answer 401, to pulls and deletes alike. Or middock uses an
existing registry given by address. Images are pushed by the manager's engine and pinned by
digest, under the address the nodes pull from.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import ipaddress
import json
import os
import re
import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .. import flock, process
from ..errors import MiddockError
from ..server.daemons import Daemon
from ..state import records
from .engine import docker

PROGRAM = "/usr/bin/docker-registry"
DEFAULT_PORT = 5000
PUSH_ADDRESS = "127.0.0.1:5001"  # middock's own way in: pushes and deletes, on loopback only
PASSWORD = re.compile(r"[A-Za-z0-9_-]{32}\Z")  # secrets.token_urlsafe(24)
PULL_USER, PUSH_USER = "pull", "push"
MANIFESTS = ", ".join(
    (
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
    )
)


@dataclass(frozen=True)
class Files:
    """middock's own registry: its CA, certificate, configuration and storage."""

    folder: Path

    @property
    def ca(self) -> Path:
        return self.folder / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.folder / "ca.key"

    @property
    def cert(self) -> Path:
        return self.folder / "registry.crt"

    @property
    def key(self) -> Path:
        return self.folder / "registry.key"

    @property
    def config(self) -> Path:
        """The nodes' registry: read-only, on the advertised address."""
        return self.folder / "config.yml"

    @property
    def push_config(self) -> Path:
        """middock's registry: pushes and deletes, on loopback."""
        return self.folder / "push.yml"

    def password(self, user: str) -> Path:
        return self.folder / f"{user}.password"

    def htpasswd(self, user: str) -> Path:
        return self.folder / f"{user}.htpasswd"

    @property
    def docker_config(self) -> Path:
        """The Docker CLI's configuration for middock's `docker stack deploy`: the pull password,
        which it hands the nodes' tasks (--with-registry-auth)."""
        return self.folder.parent / "docker"

    @property
    def data(self) -> Path:
        return self.folder / "data"

    @property
    def lock(self) -> Path:
        return self.folder / "registry.lock"


ADDRESS = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]*:[0-9]{1,5}\Z")
PEM_CERTIFICATES = re.compile(
    r"(-----BEGIN CERTIFICATE-----\n(?:[A-Za-z0-9+/=]{1,76}\n)+-----END CERTIFICATE-----\n)+\Z"
)


def check_address(address: str) -> str:
    """A registry's HOST:PORT (it names a folder of /etc/docker/certs.d)."""
    if not ADDRESS.match(address):
        raise MiddockError(f"a registry is HOST:PORT, not {address!r}")
    return address


def check_ca_pem(text: str) -> str:
    """PEM certificates and nothing else: the text root writes into Docker's trust and into the
    join script."""
    text = text.replace("\r\n", "\n").strip() + "\n"
    if not PEM_CERTIFICATES.match(text):
        raise MiddockError("the registry CA is not a PEM certificate (-----BEGIN CERTIFICATE----- … -----END …)")
    return text


def read_ca(path: Path) -> str:
    """The registry's CA as the Swarm's record names it, checked as `swarm:init` checks it."""
    text = records.read_text(path)
    if text is None:
        raise MiddockError(f"the registry CA {path} is missing: run `middock swarm:init` again, as root")
    with records.checked(path):
        return check_ca_pem(text)


def openssl(*args: str) -> None:
    result = process.capture(["openssl", *args])
    if result.returncode != 0:
        raise MiddockError(f"openssl {args[0]} failed: {(result.stderr.strip().splitlines() or ['?'])[-1]}")


def make_certificates(files: Files, host: str) -> None:
    """A CA (once, kept), and a certificate for the registry's address signed by it."""
    files.folder.mkdir(parents=True, exist_ok=True)
    curve = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    if not files.ca.exists():
        subject = "/CN=middock registry CA"
        openssl(
            "req",
            "-x509",
            *curve,
            "-keyout",
            str(files.ca_key),
            "-out",
            str(files.ca),
            "-days",
            "3650",
            "-subj",
            subject,
        )
    try:
        ipaddress.ip_address(host)
        san = f"IP:{host}"
    except ValueError:
        san = f"DNS:{host}"
    request = files.folder / "registry.csr"
    extensions = files.folder / "registry.ext"
    extensions.write_text(f"subjectAltName={san}\nbasicConstraints=critical,CA:FALSE\nextendedKeyUsage=serverAuth\n")
    openssl("req", *curve, "-keyout", str(files.key), "-out", str(request), "-subj", f"/CN={host}")
    openssl(
        "x509", "-req", "-in", str(request), "-CA", str(files.ca), "-CAkey", str(files.ca_key), "-CAcreateserial",
        "-out", str(files.cert), "-days", "3650", "-extfile", str(extensions),
    )  # fmt: skip
    request.unlink()
    extensions.unlink()
    for secret in (files.ca_key, files.key):
        secret.chmod(0o600)


def render_config(files: Files, address: str, user: str) -> str:
    """docker-registry's configuration: the nodes' read-only one (TLS, on `address`), or
    middock's own (on loopback, deletes allowed for pruning); each wants its user's password."""
    pull = user == PULL_USER
    storage = "  maintenance:\n    readonly:\n      enabled: true\n" if pull else "  delete:\n    enabled: true\n"
    tls = f"  tls:\n    certificate: {files.cert}\n    key: {files.key}\n" if pull else ""
    return (
        "# Written by middock (swarm:init); middock rewrites it.\n"
        "version: 0.1\n"
        "log:\n  level: warn\n"
        "storage:\n"
        f"  filesystem:\n    rootdirectory: {files.data}\n"
        f"{storage}"
        "auth:\n"
        f"  htpasswd:\n    realm: middock\n    path: {files.htpasswd(user)}\n"
        "http:\n"
        f"  addr: {address if pull else PUSH_ADDRESS}\n"
        f"{tls}"
    )


# bcrypt's least work: the registry checks the hash at every request (a push or a pull makes
# many, each about 0.1 s at cost 10). A higher cost slows guessing a weak password from its
# hash; these are 192 random bits, and their plain text lies beside the hash anyway.
BCRYPT_COST = 4


def bcrypt(password: str) -> str:
    """A bcrypt hash (what docker-registry's htpasswd takes), from the system's libcrypt."""
    libcrypt = ctypes.CDLL("libcrypt.so.1")
    libcrypt.crypt_gensalt.restype = ctypes.c_char_p
    libcrypt.crypt_gensalt.argtypes = [ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p, ctypes.c_int]
    libcrypt.crypt.restype = ctypes.c_char_p
    libcrypt.crypt.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    setting = libcrypt.crypt_gensalt(b"$2b$", BCRYPT_COST, None, 0)
    hashed = libcrypt.crypt(password.encode(), setting) if setting else None
    if not hashed or not hashed.startswith(b"$2b$"):
        raise MiddockError("this system's libcrypt cannot make bcrypt hashes for the registry's passwords")
    return hashed.decode()


def make_credentials(files: Files, pull_address: str) -> None:
    """A password for each of the registry's users (once, kept, 0600), their htpasswd files,
    and the Docker CLI configuration that holds the pull password."""
    for user in (PULL_USER, PUSH_USER):
        if not files.password(user).exists():
            write_private(files.password(user), secrets.token_urlsafe(24) + "\n")
        write_private(files.htpasswd(user), f"{user}:{bcrypt(read_password(files, user))}\n")
    files.docker_config.mkdir(mode=0o700, exist_ok=True)
    auth = base64.b64encode(f"{PULL_USER}:{read_password(files, PULL_USER)}".encode()).decode()
    write_private(files.docker_config / "config.json", json.dumps({"auths": {pull_address: {"auth": auth}}}) + "\n")


def read_password(files: Files, user: str) -> str:
    """The user's password as `make_credentials` made it (it goes into the htpasswd line)."""
    path = files.password(user)
    password = records.read_line(path)
    if password is None:
        raise MiddockError(
            "middock's registry has no passwords yet (made by an earlier version): run `middock swarm:init` again, "
            "as root, to close it"
        )
    if not PASSWORD.match(password):
        raise records.invalid(path, "not a password middock made")
    return password


def write_private(path: Path, text: str) -> None:
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def daemons(files: Files) -> list[Daemon]:
    """The nodes' registry and middock's own."""
    return [
        Daemon(
            name=name,
            background=[PROGRAM, "serve", str(config)],
            foreground=[PROGRAM, "serve", str(config)],
            folder=files.folder,
            log=files.folder / f"{name}.log",
        )
        for name, config in (("registry", files.config), ("registry-push", files.push_config))
    ]


def garbage_collect(files: Files) -> None:
    """Free the storage of deleted images (pushes wait meanwhile: `exclusive()`)."""
    subprocess.run(
        [PROGRAM, "garbage-collect", "--delete-untagged", str(files.push_config)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=False,
    )


@contextlib.contextmanager
def locked(files: Files | None, exclusive: bool = False) -> Iterator[None]:
    """Pushes share the registry; a garbage collection has it alone (it must not see a push
    half done). Nothing to lock for a registry middock does not run."""
    if files is None:
        yield
        return
    with flock.held(files.lock, shared=not exclusive):
        yield


class Registry:
    """The registry's HTTP API (v2), for what Docker's engine does not do: delete images.
    middock's own answers on loopback over plain HTTP; another registry over TLS. (http.client and
    ssl are imported here: most commands that import this module never talk to a registry.)"""

    def __init__(self, address: str, ca: str = "", password: str = "") -> None:
        import ssl

        self.address = address
        self.context = ssl.create_default_context(cafile=ca or None)
        self.headers = {"Accept": MANIFESTS}
        if password:
            token = base64.b64encode(f"{PUSH_USER}:{password}".encode()).decode()
            self.headers["Authorization"] = f"Basic {token}"

    @classmethod
    def own(cls, files: Files) -> Registry:
        return cls(PUSH_ADDRESS, password=read_password(files, PUSH_USER))

    def request(self, method: str, path: str) -> int:
        import http.client

        host, _, port = self.address.rpartition(":")
        if self.address == PUSH_ADDRESS:
            conn: http.client.HTTPConnection = http.client.HTTPConnection(host, int(port), timeout=30)
        else:
            conn = http.client.HTTPSConnection(host, int(port), context=self.context, timeout=30)
        try:
            conn.request(method, path, headers=self.headers)
            response = conn.getresponse()
            response.read()
            return response.status
        except OSError as error:
            raise MiddockError(f"the registry {self.address} does not answer ({error})") from None
        finally:
            conn.close()

    def answers(self) -> bool:
        """It runs: it says who may come in (200), or that a password is wanted (401)."""
        try:
            return self.request("GET", "/v2/") in (200, 401)
        except MiddockError:
            return False

    def has(self, reference: str) -> bool:
        repo, digest = split_reference(reference)
        return self.request("HEAD", f"/v2/{repo}/manifests/{digest}") == 200

    def delete(self, reference: str) -> None:
        repo, digest = split_reference(reference)
        status = self.request("DELETE", f"/v2/{repo}/manifests/{digest}")
        if status not in (202, 404):
            raise MiddockError(f"the registry {self.address} refused to delete {reference} (HTTP {status})")


def split_reference(reference: str) -> tuple[str, str]:
    """`ADDR/app/web@sha256:…` -> ("app/web", "sha256:…")."""
    name, _, digest = reference.partition("@")
    return name.partition("/")[2], digest


def push(
    client: docker.DockerClient, image: str, address: str, pull_address: str, repo: str, tag: str, password: str = ""
) -> str:
    """Push a local image (an id or reference) as `address/repo:tag`; its pinned reference, under
    the address the nodes pull from (the same storage behind both, for middock's own registry)."""
    target = f"{address}/{repo}"
    client.images.get(image).tag(target, tag)
    auth = {"username": PUSH_USER, "password": password} if password else None
    digest = ""
    for line in client.images.push(target, tag=tag, stream=True, decode=True, auth_config=auth):
        if line.get("error"):
            raise MiddockError(f"pushing {target}:{tag} to the registry failed: {line['error']}")
        digest = (line.get("aux") or {}).get("Digest", digest)
    if not digest:
        raise MiddockError(f"pushing {target}:{tag} gave no digest")
    with contextlib.suppress(docker.errors.APIError):
        client.images.remove(f"{target}:{tag}")  # the release tag keeps the image; this tag only pushed it
    return f"{pull_address}/{repo}@{digest}"
