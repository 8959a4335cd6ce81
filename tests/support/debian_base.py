"""A local Debian 12 base image for tests that build real app images without a registry.

`middock-test/debian` is `debootstrap --variant=minbase bookworm` plus Python 3 with Django,
gunicorn and psycopg2, nginx and ca-certificates, all from Debian's own packages, imported with
`docker import`. It stands in for `python:3.12-slim` and `nginx:1.27` (pass it as the
example's PYTHON_IMAGE and NGINX_IMAGE). Built once, in about two minutes, then reused while its
recipe is unchanged (the recipe's hash is a label of the image).

Use it as the session fixture `debian_base` (a module that wants it says
`pytest_plugins = ["debian_base"]`), or call `ensure_debian_base(client)`.
"""

from __future__ import annotations

import hashlib
import shutil
import time

import docker
import pytest

from support.debian_rootfs import PRUNE, RECIPE_LABEL, SUITE, build_image, prune
from support.images import built_once

DEBIAN_IMAGE = "middock-test/debian"
PACKAGES = ("python3", "python3-django", "gunicorn", "python3-psycopg2", "nginx-light", "ca-certificates")
CHANGES = (
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "ENV LANG=C.UTF-8",
    'CMD ["bash"]',
)
RECIPE = hashlib.sha256(repr((SUITE, PACKAGES, CHANGES, PRUNE, 1)).encode()).hexdigest()[:16]


def image_recipe(client: docker.DockerClient) -> str | None:
    try:
        return (client.images.get(DEBIAN_IMAGE).labels or {}).get(RECIPE_LABEL)
    except docker.errors.ImageNotFound:
        return None


def ensure_debian_base(client: docker.DockerClient) -> str:
    """The image's name, built first if it is missing or was built from another recipe."""
    return built_once(DEBIAN_IMAGE, lambda: image_recipe(client) == RECIPE, lambda: build_debian_base(client))


def build_debian_base(client: docker.DockerClient) -> None:
    if shutil.which("debootstrap") is None:
        pytest.exit("building the Debian base image needs debootstrap (apt-get install debootstrap)", returncode=3)
    try:
        old = client.images.get(DEBIAN_IMAGE).id
    except docker.errors.ImageNotFound:
        old = None
    started = time.monotonic()
    build_image(
        DEBIAN_IMAGE,
        PACKAGES,
        (*CHANGES, f"LABEL {RECIPE_LABEL}={RECIPE}"),
        prune,
        prefix="middock-debian-",
        timeout=900,
    )
    image = client.images.get(DEBIAN_IMAGE)
    print(f"built {DEBIAN_IMAGE} in {time.monotonic() - started:.0f}s, {image.attrs['Size'] / 1e6:.0f} MB")
    if old and old != image.id:
        try:
            client.images.remove(old)  # the previous recipe's image, unless something still uses it
        except docker.errors.APIError:
            pass


@pytest.fixture(scope="session")
def debian_base(docker_client: docker.DockerClient) -> str:
    """`middock-test/debian`, built once (about two minutes) and reused afterwards."""
    return ensure_debian_base(docker_client)
