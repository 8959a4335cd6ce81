"""The registry every Swarm node pulls the apps' images from.

middock runs its own from the distribution's `docker-registry` package, listening only on the
manager's advertised address, with a certificate signed by a CA it keeps (the nodes trust that
CA through `/etc/docker/certs.d/ADDR:PORT/ca.crt`, which `nodes:join-script` sets up), and with
deletion enabled so that pruning a release deletes its images. Or it uses an existing registry
given by address. Images are pushed by the manager's engine and pinned by digest.
"""

from __future__ import annotations

import contextlib
import fcntl
import http.client
import ipaddress
import os
import re
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors

from .. import process
from ..daemons import Daemon
from ..errors import MiddockError

PROGRAM = "/usr/bin/docker-registry"
DEFAULT_PORT = 5000
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
        return self.folder / "config.yml"

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


def render_config(files: Files, address: str) -> str:
    """docker-registry's configuration: TLS on `address` only, deletes allowed (for pruning)."""
    return (
        "# Written by middock (swarm:init); middock rewrites it.\n"
        "version: 0.1\n"
        "log:\n  level: warn\n"
        "storage:\n"
        f"  filesystem:\n    rootdirectory: {files.data}\n"
        "  delete:\n    enabled: true\n"
        "http:\n"
        f"  addr: {address}\n"
        f"  tls:\n    certificate: {files.cert}\n    key: {files.key}\n"
    )


def daemon(files: Files) -> Daemon:
    argv = [PROGRAM, "serve", str(files.config)]
    return Daemon(
        name="registry", background=argv, foreground=argv, folder=files.folder, log=files.folder / "registry.log"
    )


def garbage_collect(files: Files) -> None:
    """Free the storage of deleted images (pushes wait meanwhile: `exclusive()`)."""
    subprocess.run(
        [PROGRAM, "garbage-collect", "--delete-untagged", str(files.config)],
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
    fd = os.open(files.lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)


class Registry:
    """The registry's HTTP API (v2), for what Docker's engine does not do: delete images."""

    def __init__(self, address: str, ca: str = "") -> None:
        self.address = address
        self.context = ssl.create_default_context(cafile=ca or None)

    def request(self, method: str, path: str) -> int:
        host, _, port = self.address.rpartition(":")
        conn = http.client.HTTPSConnection(host, int(port), context=self.context, timeout=30)
        try:
            conn.request(method, path, headers={"Accept": MANIFESTS})
            response = conn.getresponse()
            response.read()
            return response.status
        except OSError as error:
            raise MiddockError(f"the registry {self.address} does not answer ({error})") from None
        finally:
            conn.close()

    def answers(self) -> bool:
        try:
            return self.request("GET", "/v2/") == 200
        except MiddockError:
            return False

    def has(self, reference: str) -> bool:
        repo, digest = split_reference(self.address, reference)
        return self.request("HEAD", f"/v2/{repo}/manifests/{digest}") == 200

    def delete(self, reference: str) -> None:
        repo, digest = split_reference(self.address, reference)
        status = self.request("DELETE", f"/v2/{repo}/manifests/{digest}")
        if status not in (202, 404):
            raise MiddockError(f"the registry {self.address} refused to delete {reference} (HTTP {status})")


def split_reference(address: str, reference: str) -> tuple[str, str]:
    """`ADDR/app/web@sha256:…` -> ("app/web", "sha256:…")."""
    name, _, digest = reference.partition("@")
    return name.removeprefix(f"{address}/"), digest


def push(client: docker.DockerClient, image: str, address: str, repo: str, tag: str) -> str:
    """Push a local image (an id or reference) as `address/repo:tag`; its pinned reference."""
    target = f"{address}/{repo}"
    client.images.get(image).tag(target, tag)
    digest = ""
    for line in client.images.push(target, tag=tag, stream=True, decode=True):
        if line.get("error"):
            raise MiddockError(f"pushing {target}:{tag} to the registry failed: {line['error']}")
        digest = (line.get("aux") or {}).get("Digest", digest)
    if not digest:
        raise MiddockError(f"pushing {target}:{tag} gave no digest")
    with contextlib.suppress(docker.errors.APIError):
        client.images.remove(f"{target}:{tag}")  # the release tag keeps the image; this tag only pushed it
    return f"{target}@{digest}"
