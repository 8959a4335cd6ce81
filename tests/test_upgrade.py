"""Upgrading a server from the previous release to this tree as the README says (copy the new source to the
server, run install.sh again as root), on a real Debian 12 server with systemd (tests/support/server_bed.py).

The previous release is the newest one CHANGELOG.md lists before this tree's version, installed from the
commit it names (`git archive` of this repository's history). An app deployed by it keeps answering every
request, on its own port and on its domain, while the server is upgraded; then the server says it runs this
tree's version, the app's repository, whose hooks the previous release wrote, keeps deploying, and rollback
works. One bed for the module, its tests in order; figures are printed with the prefix `[upgrade]` (pytest -s).
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterator

import pytest
from support.releases import archive, has_commit, released
from support.server_bed import (
    BedLoad,
    ServerBed,
    add_laptop,
    copy_middock,
    create_hello,
    deploy_docker,
    install,
    live_url,
    not_owned_by,
    over_ssh,
    page,
    page_soon,
    push,
    push_greeting,
    running,
)

from middock_receiver import __version__

pytestmark = [pytest.mark.bed, pytest.mark.slow, pytest.mark.xdist_group("upgrade-bed")]

DOMAIN = "hello.example.test"
HOOKS = "/home/deploy/hello.git/hooks"
FIRST_WITH_VERSION = (0, 3, 0)  # the first release `middock --version` names; before it the package said 0.1.0


def report(text: str) -> None:
    print(f"[upgrade] {text}", flush=True)


def as_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


@pytest.fixture(scope="module")
def previous() -> tuple[str, str]:
    """The previous release's version and commit: the newest the CHANGELOG lists that this tree is not."""
    version, _, commit = next((v, d, c) for v, d, c in released() if v != __version__ and c is not None)
    if not has_commit(commit):
        pytest.skip(f"needs a git clone of middock that holds {version}'s commit {commit}")
    return version, commit


@pytest.fixture(scope="module")
def bed(previous: tuple[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerBed]:
    """A server with the laptop user, who holds the previous release's source (and copied it to root)."""
    source = archive(previous[1], tmp_path_factory.mktemp("previous") / "middock")
    with ServerBed() as server:
        add_laptop(server)
        copy_middock(server, source=source)
        yield server


@pytest.fixture(scope="module")
def state() -> dict:
    """What one test learns for the next: the app's port, its hooks as the previous release wrote them."""
    return {}


def by_domain(bed: ServerBed) -> str:
    """The app's page through Caddy on port 80, with its domain as Host."""
    return page(bed, f"http://{DOMAIN}/", "--resolve", f"{DOMAIN}:80:127.0.0.1")


def hooks(bed: ServerBed) -> dict[str, str]:
    """The app repository's git hooks: name and text."""
    names = bed.exec("ls", HOOKS).stdout.split()
    return {name: bed.exec("cat", f"{HOOKS}/{name}").stdout for name in names if not name.endswith(".sample")}


def hook_modules(texts: dict[str, str]) -> set[str]:
    """The Python modules the hooks run (`python -I -m MODULE`)."""
    return {module for text in texts.values() for module in re.findall(r" -m (\S+)", text)}


@contextlib.contextmanager
def answered_under_load(bed: ServerBed, state: dict, during: str) -> Iterator[None]:
    """Load on the app's port and on its domain while the block runs: every request is answered."""
    loads = {"port": BedLoad(bed, state["port"]), "domain": BedLoad(bed, 80, host=DOMAIN)}
    try:
        yield
    finally:
        reports = {name: load.stop() for name, load in loads.items()}
    for name, found in reports.items():
        report(
            f"load on the app's {name} during the {during}: {found['total']} requests, {len(found['failures'])} failed"
        )
    for name, found in reports.items():
        assert found["stopped"], f"the load on the app's {name} reached its bounds before the {during} ended"
        assert found["total"] > 0 and found["failures"] == [], f"{name}: {found['failures'][:5]}"


def test_the_previous_release_installs_and_goes_live_on_a_domain(
    bed: ServerBed, previous: tuple[str, str], state: dict
) -> None:
    """The previous release, installed as its Quickstart says, serves hello on its port and on a domain."""
    version, commit = previous
    started = time.monotonic()
    installed = install(bed)
    seconds = time.monotonic() - started
    assert installed.returncode == 0, installed.stdout + installed.stderr
    said = bed.exec("middock", "--version", check=False)
    asked = bed.exec("middock", "version", check=False)
    if as_tuple(version) >= FIRST_WITH_VERSION:
        assert said.stdout == asked.stdout == f"middock {version}\n", said.stderr + asked.stderr
    else:  # neither existed: argparse refuses them
        assert said.returncode == 2 and "arguments are required: command" in said.stderr, said.stderr
        assert asked.returncode == 2 and "invalid choice: 'version'" in asked.stderr, asked.stderr
        assert "middock 0.1.0:" in installed.stdout, installed.stdout  # the package's __version__
    report(f"previous release {version} (commit {commit}) installed in {seconds:.1f} s")
    create_hello(bed)
    pushed = push(bed)
    url = live_url(pushed.stderr)
    assert pushed.returncode == 0 and url, pushed.stderr
    state["port"] = int(re.search(r":(\d+)/$", url).group(1))
    over_ssh(bed, "domains:add", "hello", DOMAIN)
    bed.exec("middock", "edge:set", "tls=off")  # no ACME CA is reachable from here
    assert "Hello from middock" in page(bed, f"http://localhost:{state['port']}/")
    assert "Hello from middock" in page_soon(lambda: by_domain(bed))  # Caddy starts again with tls=off
    state["hooks"] = hooks(bed)
    modules = hook_modules(state["hooks"])
    assert modules, state["hooks"]
    report(f"the app's hooks, as {version} wrote them, run {sorted(modules)}")


def test_upgrade_under_load_fails_no_request(bed: ServerBed, state: dict) -> None:
    """Copying the new source and running install.sh again: every request to the app is answered, and neither
    the edge's proxies nor the app's containers are restarted."""
    before = running(bed)
    with answered_under_load(bed, state, "upgrade"):
        started = time.monotonic()
        bed.exec("rm", "-rf", "/home/laptop/middock", "/root/middock")
        copy_middock(bed)
        installed = install(bed)
        seconds = time.monotonic() - started
        assert installed.returncode == 0, installed.stdout + installed.stderr
        assert f"middock {__version__}:" in installed.stdout, installed.stdout
        report(f"upgrade (new source copied, install.sh run): {seconds:.1f} s")
    assert running(bed) == before, "the upgrade restarted a proxy or a container of the app"


def test_the_server_says_it_runs_this_version(bed: ServerBed) -> None:
    """`middock --version` on the server, `version` and `status` over SSH name this tree's version."""
    assert bed.exec("middock", "--version").stdout == f"middock {__version__}\n"
    assert over_ssh(bed, "version").stdout == f"middock {__version__}\n"
    assert over_ssh(bed, "status", "hello").stdout.splitlines()[-1] == f"middock {__version__} on this server"


def test_the_apps_repository_keeps_deploying_through_its_old_hooks_too(bed: ServerBed, state: dict) -> None:
    """install.sh re-points the app's hooks to the new module, and a repository whose hooks still name the
    previous release's module deploys all the same."""
    assert hook_modules(hooks(bed)) == {"middock_receiver.push.hook"}, "install.sh did not re-point the hooks"
    push_greeting(bed, "Hello from middock, after the upgrade")
    assert "after the upgrade" in page(bed, f"http://localhost:{state['port']}/")
    # A repository install.sh did not re-point (another deploy user's, or pushed to while it ran).
    for name, text in state["hooks"].items():
        bed.exec("tee", f"{HOOKS}/{name}", user="deploy", input=text)
    push_greeting(bed, "Hello from middock, through the old hooks")
    assert "through the old hooks" in page(bed, f"http://localhost:{state['port']}/")
    assert "through the old hooks" in by_domain(bed)
    bed.exec("middock", "refresh")
    assert hook_modules(hooks(bed)) == {"middock_receiver.push.hook"}


def test_rollback_after_the_upgrade(bed: ServerBed, state: dict) -> None:
    """`rollback` serves the release before the last push again."""
    over_ssh(bed, "rollback", "hello")
    assert "after the upgrade" in page(bed, f"http://localhost:{state['port']}/")
    assert "after the upgrade" in by_domain(bed)


def test_refresh_rootless_moves_the_app_to_the_users_own_daemon_and_drops_no_request(
    bed: ServerBed, state: dict
) -> None:
    """The upgrade kept the deploy user, whose app runs on the root daemon, in the docker group; root's
    `refresh --rootless` moves the app to the user's own rootless daemon under load: every request answered on
    its port and its domain, its releases kept, the user out of the docker group, and a push and a rollback work
    there."""
    if "docker" not in bed.exec("id", "-nG", "deploy").stdout.split():
        pytest.skip("the previous release gave the deploy user its own rootless daemon: nothing to move")
    with answered_under_load(bed, state, "move"):
        started = time.monotonic()
        moved = bed.exec("middock", "refresh", "--rootless", "--user", "deploy", check=False)
        seconds = time.monotonic() - started
        assert moved.returncode == 0, moved.stdout + moved.stderr
        report(f"refresh --rootless (the app moved to the user's own daemon): {seconds:.1f} s")
    assert "docker" not in bed.exec("id", "-nG", "deploy").stdout.split()
    assert "rootless move of release" in over_ssh(bed, "releases", "hello").stdout
    assert bed.exec("docker", "ps", "--quiet").stdout == "", "the app's containers are still on the root daemon"
    assert deploy_docker(bed, "ps", "--quiet").stdout.strip(), "nothing runs on the user's own daemon"
    push_greeting(bed, "Hello from middock, on rootless Docker")
    assert "on rootless Docker" in page(bed, f"http://localhost:{state['port']}/")
    over_ssh(bed, "rollback", "hello")
    assert "after the upgrade" in page(bed, f"http://localhost:{state['port']}/")
    assert "after the upgrade" in by_domain(bed)


def test_no_file_of_the_deploy_users_home_is_roots(bed: ServerBed) -> None:
    """After the upgrade and root's `middock refresh`, the deploy user owns every file of its home."""
    owned = not_owned_by(bed)
    assert owned == "", f"files under /home/deploy not owned by deploy:\n{owned}"
