"""Let's Encrypt's test ACME server (Debian's `pebble`) on loopback, for certificates offline.

Pebble's own listener certificate comes from a throwaway CA made with openssl (the edge trusts
it through `acme-ca-root`); with PEBBLE_VA_ALWAYS_VALID it issues without validating a
challenge, so the test's domain names need no DNS. Certificates chain to a root pebble makes at
each start, fetched from its management endpoint.
"""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import time
import urllib.request
from pathlib import Path

PEBBLE = "/usr/bin/pebble"


def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def listener_certificate(folder: Path) -> tuple[Path, Path, Path]:
    """A CA and, signed by it, a certificate for 127.0.0.1: (ca, cert, key)."""
    folder.mkdir(parents=True, exist_ok=True)
    ca_key, ca, key, csr, cert, ext = (
        folder / name for name in ("ca.key", "ca.pem", "key.pem", "cert.csr", "cert.pem", "ext.cnf")
    )
    curve = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl("req", "-x509", *curve, "-keyout", str(ca_key), "-out", str(ca), "-days", "30", "-subj", "/CN=test CA")
    openssl("req", *curve, "-keyout", str(key), "-out", str(csr), "-subj", "/CN=localhost")
    ext.write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=critical,CA:FALSE\nextendedKeyUsage=serverAuth\n"
    )
    openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial",
        "-out", str(cert), "-days", "30", "-extfile", str(ext),
    )  # fmt: skip
    return ca, cert, key


class Pebble:
    def __init__(self, folder: Path, port: int, management: int) -> None:
        self.folder, self.port, self.management = folder, port, management
        self.ca, cert, key = listener_certificate(folder / "certs")
        self.config = folder / "pebble.json"
        self.config.write_text(
            json.dumps(
                {
                    "pebble": {
                        "listenAddress": f"127.0.0.1:{port}",
                        "managementListenAddress": f"127.0.0.1:{management}",
                        "certificate": str(cert),
                        "privateKey": str(key),
                        "httpPort": 5002,
                        "tlsPort": 5001,
                        "ocspResponderURL": "",
                        "externalAccountBindingRequired": False,
                    }
                }
            )
        )
        self.context = ssl.create_default_context(cafile=str(self.ca))
        self.process: subprocess.Popen | None = None

    @property
    def directory(self) -> str:
        return f"https://127.0.0.1:{self.port}/dir"

    def start(self) -> None:
        env = {**os.environ, "PEBBLE_VA_ALWAYS_VALID": "1", "PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0"}
        log = open(self.folder / "pebble.log", "ab")
        self.process = subprocess.Popen([PEBBLE, "-config", str(self.config)], stdout=log, stderr=log, env=env)
        log.close()
        deadline = time.monotonic() + 15
        while True:
            try:
                with urllib.request.urlopen(self.directory, context=self.context, timeout=1):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def stop(self) -> None:
        if self.process:
            self.process.terminate()
            self.process.wait(timeout=10)

    def root(self) -> str:
        """The root every certificate pebble issues chains to (PEM)."""
        url = f"https://127.0.0.1:{self.management}/roots/0"
        with urllib.request.urlopen(url, context=self.context, timeout=5) as response:
            return response.read().decode()
