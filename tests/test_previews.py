"""Preview apps of branches, end to end: real pushes of branches through the real edge (Caddy
and HAProxy), a real Docker Engine, while the parent app serves main under load."""

from __future__ import annotations

import json
import ssl
import subprocess
import time

from support.apps import WEB_APP_BUILD
from support.edge import Site, caddy_local_root
from support.groups import ZERO_DROP
from support.load import Load
from support.middock import Server, Workdir
from support.previews import containers_of, last_step
from support.web import http_get

PREVIEW_DOMAIN = "preview.example.test"

COMPOSE = """services:
  web:
    image: ${MIDDOCK_APP}-web:${IMAGE_TAG}
    environment:
      VERSION: ${VERSION:-unset}
    ports: ["8080:8080"]
    volumes: ["${SHARED}:/shared", "data:/data"]
    init: true
    stop_grace_period: 1s
volumes:
  data: {}
"""

EXTRA_SERVICE = """  extra:
    image: middock-test/busybox
    command: ["sleep", "1000000"]
    init: true
    stop_grace_period: 1s
"""

SETTINGS = """MIDDOCK_WEB=web:8080
VERSION=v1
MIDDOCK_PREVIEW_SETUP=web sh -c 'echo "setup $VERSION" >> /shared/setup.log'
MIDDOCK_PREVIEW_TEARDOWN=web sh -c 'echo "teardown $VERSION" >> /shared/teardown.log'
"""


def write_app(work: Workdir, compose: str = COMPOSE, settings: str = SETTINGS) -> None:
    """A web app behind the edge whose page is its VERSION; setup and teardown write a line
    each to the host folder SHARED (a config var), so the test can count them."""
    work.write("docker/build-web.sh", WEB_APP_BUILD, executable=True)
    work.write("www/index.html", "")
    work.write("compose.yaml", compose)
    work.write("middock.env", settings)


@ZERO_DROP
def test_a_branch_gets_its_own_app_at_its_own_domain_and_goes_with_the_branch(
    server: Server, work: Workdir, app: str, tmp_path, docker_client
):
    shared = tmp_path / "shared"
    shared.mkdir()
    http_port, https_port = server.start_edge("tls=internal")
    server.middock("config:set", app, f"SHARED={shared}", "SECRET=parent's")
    write_app(work)
    work.commit("main v1")
    assert "is live" in work.push().stderr
    port = server.app_port(app)
    for key, value in (("previews", "on"), ("preview-domain", PREVIEW_DOMAIN), ("preview-max", "2")):
        server.middock("apps:set", app, key, value)

    with Load(port, slow=0, pace=0.01) as load:
        work.git("checkout", "-q", "-b", "Feature/Big_Search")
        write_app(
            work, COMPOSE.replace("volumes:\n  data", EXTRA_SERVICE + "volumes:\n  data")
        )  # the branch's own compose file
        work.write("middock.preview.env", "VERSION=preview of ${MIDDOCK_PREVIEW}\nDATABASE_URL=db/${MIDDOCK_PREVIEW}\n")
        work.commit("a feature")
        first = work.push("Feature/Big_Search")
        preview = f"{app}--feature-big-search"
        url = f"https://feature-big-search.{PREVIEW_DOMAIN}:{https_port}/"
        assert f"Creating preview {preview} of branch Feature/Big_Search" in first.stderr, first.stderr
        assert "Running preview setup command" in first.stderr, first.stderr
        assert f"is live at {url}" in last_step(first.stderr), first.stderr

        site = Site(http_port, https_port, ssl.create_default_context(cafile=str(caddy_local_root(server))))
        site.wait_for(f"feature-big-search.{PREVIEW_DOMAIN}", f"preview of {preview}")
        services = {
            row["service"] for row in json.loads(server.middock("status", preview, "--json").stdout)["services"]
        }
        assert services == {"web", "extra"}, services

        work.write("www/about.html", "second push")
        work.commit("more feature")
        second = work.push("Feature/Big_Search")
        assert "is live" in second.stderr and "Creating preview" not in second.stderr, second.stderr
        assert "Running preview setup command" not in second.stderr, second.stderr
        assert (shared / "setup.log").read_text() == f"setup preview of {preview}\n"
        assert site.ask(f"feature-big-search.{PREVIEW_DOMAIN}", "/about.html")[:2] == (200, "second push")

        preview_config = (server.home / ".middock" / preview / "config.env").read_text()
        assert "DATABASE_URL='db/" + preview + "'" in preview_config and "SECRET='parent\\'s'" in preview_config
        server.middock("config:set", preview, "SECRET=the preview's")
        assert "the preview" not in (server.home / ".middock" / app / "config.env").read_text()
        assert "DATABASE_URL" not in (server.home / ".middock" / app / "config.env").read_text()

        listed = json.loads(server.middock("previews", app, "--json").stdout)
        assert [(row["name"], row["branch"], row["url"], row["release"]) for row in listed] == [
            (preview, "Feature/Big_Search", url, 3)
        ], listed
        assert docker_client.volumes.get(f"{preview}_data")

        server.wait_idle(preview)
        deleted = work.push("--delete", "Feature/Big_Search")
        assert f"Destroyed preview {preview}" in deleted.stderr, deleted.stderr
        assert "Running preview teardown command" in deleted.stderr, deleted.stderr
    report = load.report
    assert not report.failures and report.versions() == {"v1"}, report.summary()

    assert (shared / "teardown.log").read_text() == f"teardown preview of {preview}\n"
    assert containers_of(docker_client, preview) == []
    assert not [image for image in docker_client.images.list() if any(t.startswith(preview) for t in image.tags)]
    assert not [volume for volume in docker_client.volumes.list() if volume.name.startswith(f"{preview}_")]
    assert docker_client.volumes.get(f"{app}_data")  # the parent's data stays
    assert not (server.home / ".middock" / preview).exists()
    assert (
        f"feature-big-search.{PREVIEW_DOMAIN}"
        not in (server.home / ".middock" / "_edge").joinpath("domains.map").read_text()
    )
    assert json.loads(server.middock("previews", app, "--json").stdout) == []
    assert [r["number"] for r in server.releases(app)] == [1] and http_get(port) == "v1\n"


@ZERO_DROP
def test_previews_refuse_what_they_cannot_do_and_a_broken_branch_fails_alone(
    server: Server, work: Workdir, app: str, tmp_path, docker_client
):
    shared = tmp_path / "shared"
    shared.mkdir()
    server.middock("config:set", app, f"SHARED={shared}")
    server.middock("apps:set", app, "previews", "on")
    work.git("checkout", "-q", "-b", "first")
    write_app(work)
    work.commit("a branch before the parent runs behind the edge")
    refused = work.push("first")
    assert refused.returncode == 0 and f"previews need {app} to run behind the edge" in refused.stderr, refused.stderr
    assert json.loads(server.middock("previews", app, "--json").stdout) == []

    for bad in (("previews", "maybe"), ("preview-max", "0"), ("preview-domain", "not a domain")):
        wrong = server.middock("apps:set", app, *bad, check=False)
        assert wrong.returncode != 0 and len(wrong.stderr.splitlines()) == 1, wrong.stderr
    made = server.middock("apps:create", f"{app}--x", check=False)
    assert made.returncode != 0 and "kept for preview apps" in made.stderr, made.stderr

    server.start_edge("tls=off")
    work.git("checkout", "-q", "-b", "main")
    work.commit("main")
    assert "is live" in work.push().stderr
    port = server.app_port(app)
    server.middock("apps:set", app, "preview-max", "1")
    work.git("checkout", "-q", "first")
    work.commit("first again")
    first = work.push("first")
    preview = f"{app}--first"
    assert "is live at http://" in last_step(first.stderr), first.stderr
    preview_port = server.app_port(preview)
    assert preview_port != port and http_get(preview_port) == "v1\n"

    work.git("checkout", "-q", "-b", "second")
    work.commit("one preview too many")
    limited = work.push("second")
    assert "its preview-max" in limited.stderr and "Running" not in limited.stderr, limited.stderr
    assert [row["branch"] for row in json.loads(server.middock("previews", app, "--json").stdout)] == ["first"]

    with Load(port, slow=0, pace=0.01) as load:
        work.git("checkout", "-q", "first")
        work.write("middock.env", SETTINGS + "MIDDOCK_HEALTH_PATH=/nowhere\nMIDDOCK_HEALTH_TIMEOUT=3\n")
        work.commit("broken")
        broken = work.push("first")
        assert "Deploy failed" in broken.stderr, broken.stderr
    assert not load.report.failures and load.report.versions() == {"v1"}, load.report.summary()
    assert http_get(preview_port) == "v1\n"  # the preview's last good release still serves
    assert [r["result"] for r in server.releases(preview)] == ["succeeded", "failed"]
    assert [r["number"] for r in server.releases(app)] == [1]

    gone = server.middock("previews:destroy", app, "first")
    assert f"Destroyed preview {preview}" in gone.stdout, gone.stdout
    assert containers_of(docker_client, preview) == []
    missing = server.middock("previews:destroy", app, "first", check=False)
    assert missing.returncode == 1 and len(missing.stderr.splitlines()) == 1, missing.stderr
    assert http_get(port) == "v1\n"


def test_previews_expire_after_their_ttl_and_apps_destroy_takes_them_along(
    server: Server, work: Workdir, app: str, tmp_path, docker_client
):
    shared = tmp_path / "shared"
    shared.mkdir()
    server.start_edge("tls=off")
    server.middock("config:set", app, f"SHARED={shared}")
    write_app(work, settings=SETTINGS + "MIDDOCK_PREVIEW_BRANCHES=feature/* fix-*\n")
    work.commit("main")
    assert "is live" in work.push().stderr
    server.middock("apps:set", app, "previews", "on")
    server.middock("apps:set", app, "preview-ttl", "3")
    crontab = subprocess.run(["crontab", "-l"], capture_output=True, text=True).stdout
    assert f"previews:expire {app}" in crontab, crontab

    for branch in ("feature/a", "fix-b", "other"):
        work.git("checkout", "-q", "-b", branch, "main")
        work.commit(branch)
        pushed = work.push(branch)
        if branch == "other":
            assert "no preview: it matches none of MIDDOCK_PREVIEW_BRANCHES (feature/* fix-*)" in pushed.stderr
        else:
            assert "is live" in pushed.stderr, pushed.stderr
    names = [row["name"] for row in json.loads(server.middock("previews", app, "--json").stdout)]
    assert names == [f"{app}--feature-a", f"{app}--fix-b"], names

    record = server.home / ".middock" / f"{app}--fix-b" / "preview.json"
    stale = json.loads(record.read_text())
    stale["pushed"] = time.time() - 4 * 86400
    record.write_text(json.dumps(stale))
    server.wait_idle(f"{app}--fix-b")
    expired = server.middock("previews:expire", app)
    assert f"Destroyed preview {app}--fix-b" in expired.stdout, expired.stdout
    assert [row["name"] for row in json.loads(server.middock("previews", app, "--json").stdout)] == [
        f"{app}--feature-a"
    ]

    server.middock("apps:set", app, "gate", "on")  # a preview's push is gated as the parent's
    work.git("checkout", "-q", "-b", "feature/broken", "main")
    work.write("middock.env", SETTINGS + "MIDDOCK_HEALTH_PATH=/nowhere\nMIDDOCK_HEALTH_TIMEOUT=2\n")
    work.commit("broken")
    rejected = work.push("feature/broken")
    assert rejected.returncode != 0 and "Deploy failed" in rejected.stderr, rejected.stderr
    assert f"Destroyed preview {app}--feature-broken" in rejected.stderr, rejected.stderr
    assert work.git("ls-remote", "production", "feature/broken").stdout == ""
    assert [row["name"] for row in json.loads(server.middock("previews", app, "--json").stdout)] == [
        f"{app}--feature-a"
    ]

    refused = server.middock("apps:destroy", app, check=False)
    assert refused.returncode == 1 and f"its previews ({app}--feature-a)" in refused.stderr, refused.stderr
    server.wait_idle(f"{app}--feature-a")
    server.middock("apps:destroy", app, "--force")
    assert containers_of(docker_client, f"{app}--feature-a") == [] and containers_of(docker_client, app) == []
    assert (shared / "teardown.log").read_text().count("teardown") == 2
    assert f"previews:expire {app}" not in subprocess.run(["crontab", "-l"], capture_output=True, text=True).stdout
