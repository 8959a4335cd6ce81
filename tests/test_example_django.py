"""examples/django-postgres deployed by middock as a user would: the example copied into a work
tree, pushed with the real git client, its two images built by its own scripts from the local
Debian base image (no registry), Django migrating the host's PostgreSQL as the release command,
nginx serving the collected static files and passing the rest to gunicorn, behind the edge. The
PostgreSQL is set up with the very lines of the example's README."""

from __future__ import annotations

import json
import shutil

import pytest
from support.middock import ROOT, Workdir
from support.ports import free_port
from support.postgres import app_addresses, host_gateway, postgres_cluster
from support.rootless import load_image
from support.web import http_get

pytest_plugins = ["support.debian_base"]

EXAMPLE = ROOT / "examples" / "django-postgres"
LOCAL_FILES = shutil.ignore_patterns("__pycache__", "*.pyc", "db.sqlite3", "staticfiles", ".env", ".venv")
# The README's part of "PostgreSQL on the host" for each daemon, and the host address it shows there.
README_PARTS = {"root": "### On the root daemon", "rootless": "### On rootless Docker"}
README_HOST = {"root": "172.17.0.1", "rootless": "192.0.2.10"}


def readme_lines(daemon: str = "root") -> tuple[list[str], list[str]]:
    """The postgresql.conf and the pg_hba.conf lines of the README's "PostgreSQL on the host", for a daemon."""
    section = (EXAMPLE / "README.md").read_text().split("## PostgreSQL on the host\n", 1)[1].split("\n## ", 1)[0]
    part = section.split(README_PARTS[daemon], 1)[1].split("\n### ", 1)[0]
    block = [line.strip() for line in part.splitlines() if line.startswith("    ")]
    settings = [line for line in block if line.startswith("listen_addresses")]
    return settings, [line for line in block if line.startswith("host ")]


@pytest.fixture
def readme_postgres(docker_client):
    """PostgreSQL on the host as the README sets it up: its role and database, its
    listen_addresses and pg_hba.conf lines as written (nothing else lets the app in)."""
    settings, hba = readme_lines()
    assert len(settings) == 1 and README_HOST["root"] in settings[0] and hba, (settings, hba)
    settings = [settings[0].replace(README_HOST["root"], app_addresses()["host"])]  # as the README says
    with postgres_cluster(docker_client, settings, hba) as cluster:
        cluster.query(f"create role guestbook login password '{cluster.password}'")
        cluster.query("create database guestbook owner guestbook")
        yield cluster


def test_the_readmes_database_lines_are_what_middock_networks_prints(docker_client):
    """`middock networks` names the subnets the README lets in, and the host address containers
    really reach as host.docker.internal."""
    shown = app_addresses()
    assert [line.split()[3] for line in readme_lines()[1]] == shown["from"]
    assert shown["host"] == host_gateway(docker_client)


def test_django_example_migrates_serves_notes_static_files_and_health(server, work, app, readme_postgres, debian_base):
    postgres = readme_postgres
    server.start_edge()
    shutil.copytree(EXAMPLE, work.path, dirs_exist_ok=True, ignore=LOCAL_FILES)
    server.middock(
        "config:set",
        app,
        f"DATABASE_URL=postgresql://guestbook:{postgres.password}@host.docker.internal:{postgres.port}/guestbook",
        f"PYTHON_IMAGE={debian_base}",
        f"NGINX_IMAGE={debian_base}",
        "--no-deploy",
    )
    work.commit("the django-postgres example")

    push = work.push()
    out = push.stdout + push.stderr
    assert push.returncode == 0, out
    assert "-----> Running release command: app python3 manage.py migrate --noinput" in out
    assert "Applying guestbook.0001_initial... OK" in out
    assert "is live at http://" in out, out
    assert postgres.password not in out
    port = server.app_port(app)
    tables = postgres.query("select to_regclass('guestbook_note')", database="guestbook")
    assert tables.strip() == "guestbook_note"
    migrations = postgres.query("select app || ' ' || name from django_migrations", database="guestbook")
    assert migrations.split() == ["guestbook", "0001_initial"]

    note = "insert into guestbook_note (text, created) values ('Signed by psql <3', now())"
    postgres.query(note, database="guestbook")
    page = http_get(port, "/")
    assert "<h1>Hello from Django</h1>" in page
    assert "Signed by psql &lt;3" in page
    assert "release 1" in page
    assert 'href="/static/guestbook/style.css"' in page

    # A note added the README's way: a one-off container of the live release reading stdin.
    note = 'from guestbook.models import Note; Note.objects.create(text="Signed by middock run")\n'
    server.middock("run", app, "app", "python3", "manage.py", "shell", input=note)
    assert "Signed by middock run" in http_get(port, "/")

    css = http_get(port, "/static/guestbook/style.css")
    assert css == (EXAMPLE / "app/guestbook/static/guestbook/style.css").read_text()
    assert http_get(port, "/health/") == "ok\n"

    # A config change redeploys (on new networks): the release command finds nothing to migrate, the notes stay.
    config = server.middock("config:set", app, "GREETING=Hi from a config var")
    assert "No migrations to apply." in config.stdout + config.stderr
    page = http_get(port, "/")
    assert "<h1>Hi from a config var</h1>" in page and "release 2" in page and "Signed by psql" in page


@pytest.mark.xdist_group("default-ports")  # the session's deploy user (conftest.py)
def test_django_example_on_the_deploy_users_rootless_daemon(deployment, debian_base, docker_client, tmp_path):
    """The same example pushed over SSH by install.sh's deploy user, on its rootless daemon, to a
    PostgreSQL set up with the README's rootless lines and the address `networks` prints there."""
    alice = deployment.alice
    shown = json.loads(alice.run("networks", "--json").stdout)
    assert shown["rootless"] and shown["from"] == [f"{shown['host']}/32"], shown
    settings, hba = (
        [line.replace(README_HOST["rootless"], shown["host"]) for line in lines] for lines in readme_lines("rootless")
    )
    assert len(settings) == 1 and [line.split()[3] for line in hba] == shown["from"], (settings, hba)
    load_image(deployment.user, debian_base)
    with postgres_cluster(docker_client, settings, hba) as postgres:
        postgres.query(f"create role guestbook login password '{postgres.password}'")
        postgres.query("create database guestbook owner guestbook")
        app, port = deployment.new_app(), free_port()
        database = f"postgresql://guestbook:{postgres.password}@host.docker.internal:{postgres.port}/guestbook"
        images = [f"PYTHON_IMAGE={debian_base}", f"NGINX_IMAGE={debian_base}"]
        assert alice.run("config:set", app, f"DATABASE_URL={database}", *images, "--no-deploy").returncode == 0
        assert alice.run("apps:set", app, "port", str(port)).returncode == 0
        work = Workdir(tmp_path / "guestbook")
        shutil.copytree(EXAMPLE, work.path, dirs_exist_ok=True, ignore=LOCAL_FILES)
        work.commit("the django-postgres example")
        work.env["GIT_SSH_COMMAND"] = alice.git_ssh_command
        work.git("remote", "add", "production", alice.url(f"{app}.git"))
        push = work.push()
        out = push.stdout + push.stderr
        assert push.returncode == 0 and "Applying guestbook.0001_initial... OK" in out and "is live at" in out, out
        postgres.query("insert into guestbook_note (text, created) values ('Signed on rootless', now())", "guestbook")
        page = http_get(port, "/")
        assert "<h1>Hello from Django</h1>" in page and "Signed on rootless" in page, page
        assert http_get(port, "/health/") == "ok\n"
