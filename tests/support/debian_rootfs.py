"""A Debian root file system made with debootstrap, from the mirror apt already uses: what the
tests' images (debian_base.py, server_bed.py) have in common. Standard library only, so that
scripts/try.sh needs nothing but Python, Docker and debootstrap."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

SUITE = "bookworm"
FALLBACK_MIRROR = "http://deb.debian.org/debian"
RECIPE_LABEL = "middock-test.recipe"
# Left out of the image: downloaded .debs, apt's lists, docs and translations (about 60 MB).
PRUNE = (
    "var/cache/apt/archives",
    "var/lib/apt/lists",
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
    "usr/share/locale",
)
KEEP = {"partial", "lock", "locale.alias"}  # apt's own empty folders and lock files stay


def apt_mirror(suite: str = SUITE) -> str:
    """The Debian mirror apt is configured with for `suite` (deb822 .sources or one-line
    sources.list), so debootstrap fetches from the same place apt does."""
    found = []
    etc = Path("/etc/apt")
    for path in sorted(etc.glob("sources.list.d/*.sources")):
        for stanza in re.split(r"\n\s*\n", path.read_text(errors="replace")):
            fields = {}
            for line in stanza.splitlines():
                if ":" in line and not line.lstrip().startswith("#"):
                    key, _, value = line.partition(":")
                    fields[key.strip().lower()] = value.split()
            if "deb" in fields.get("types", []) and fields.get("enabled", ["yes"]) != ["no"]:
                found += [(uri, fields.get("suites", [])) for uri in fields.get("uris", [])]
    for path in [etc / "sources.list", *sorted(etc.glob("sources.list.d/*.list"))]:
        if path.is_file():
            for line in path.read_text(errors="replace").splitlines():
                words = re.sub(r"\[[^\]]*\]", "", line.split("#")[0]).split()
                if len(words) >= 3 and words[0] == "deb":
                    found.append((words[1], [words[2]]))
    for uri, suites in found:
        if suite in suites:
            return uri.rstrip("/")
    return FALLBACK_MIRROR


def apt_proxy_env(mirror: str) -> dict[str, str]:
    """apt's proxy for the mirror (Acquire::http::Proxy, or its per-host form) as the variable
    debootstrap's wget reads; none when apt uses none."""
    scheme, _, rest = mirror.partition("://")
    host = rest.split("/")[0].split("@")[-1].split(":")[0]
    dump = subprocess.run(
        ["apt-config", "dump", "--no-empty", "--format", "%f=%v%n", f"Acquire::{scheme}::Proxy"],
        capture_output=True,
        text=True,
    ).stdout
    settings = dict(line.partition("=")[::2] for line in dump.splitlines() if "=" in line)
    value = settings.get(f"Acquire::{scheme}::Proxy::{host}", settings.get(f"Acquire::{scheme}::Proxy", ""))
    return {f"{scheme}_proxy": value} if "://" in value else {}


def prune(root: Path) -> None:
    for name in PRUNE:
        for path in (root / name).glob("*"):
            if path.name in KEEP:
                continue
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
    # The host's own name and resolver, copied in by debootstrap; Docker provides its own.
    for name in ("etc/hostname", "etc/resolv.conf"):
        if (root / name).is_file():
            (root / name).write_text("")


def remove_tree(path: Path) -> None:
    """Remove the build folder, unmounting first whatever debootstrap left mounted inside it
    (/proc, /sys, a bound /dev), so nothing outside it is ever deleted through a mount."""
    inside = str(path.resolve()) + "/"
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    for mount in sorted((m for m in mounts if m.startswith(inside)), key=len, reverse=True):
        subprocess.run(["umount", "-l", mount], capture_output=True)
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    if any(m.startswith(inside) for m in mounts):
        raise RuntimeError(f"{path} still has mounts inside; not removing it")
    shutil.rmtree(path, ignore_errors=True)


def build_image(
    image: str,
    packages: Sequence[str],
    changes: Sequence[str],
    prepare: Callable[[Path], None],
    *,
    prefix: str,
    timeout: float,
    error: type[Exception] = RuntimeError,
) -> str:
    """`image` from debootstrap's minbase of SUITE with `packages`, from the mirror apt uses; `prepare`
    finishes the tree, `docker import` applies `changes` (Dockerfile lines). Its id, as docker import
    printed it; `error` on a failure, the work folder removed either way."""
    work = Path(tempfile.mkdtemp(prefix=prefix, dir="/var/tmp"))
    root = work / "root"
    try:
        mirror = apt_mirror()
        # In its own process group, so a timeout also ends the dpkg it runs in the chroot.
        debootstrap = subprocess.Popen(
            ["debootstrap", "--variant=minbase", f"--include={','.join(packages)}", SUITE, str(root), mirror],
            env={**os.environ, **apt_proxy_env(mirror), "DEBIAN_FRONTEND": "noninteractive"},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        try:
            output = debootstrap.communicate(timeout=timeout)[0]
        except subprocess.TimeoutExpired:
            os.killpg(debootstrap.pid, signal.SIGKILL)
            output = debootstrap.communicate()[0] + f"\n(killed after {timeout:.0f} s)"
        if debootstrap.returncode != 0:
            log = root / "debootstrap/debootstrap.log"
            detail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
            raise error(f"debootstrap from {mirror} exited {debootstrap.returncode}:\n{output[-3000:]}{detail}")
        prepare(root)
        tar = subprocess.Popen(["tar", "-C", str(root), "--numeric-owner", "-c", "."], stdout=subprocess.PIPE)
        options = [arg for change in changes for arg in ("--change", change)]
        imported = subprocess.run(
            ["docker", "import", *options, "-", image], stdin=tar.stdout, capture_output=True, text=True
        )
        tar.stdout.close()
        if tar.wait() != 0 or imported.returncode != 0:
            raise error(f"docker import failed: {imported.stderr}")
    finally:
        remove_tree(work)
    return imported.stdout.strip()
