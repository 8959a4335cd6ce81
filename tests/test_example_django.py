"""examples/django-postgres deployed by middock as a user would: the example copied into a work
tree, pushed with the real git client, its two images built by its own scripts from the local
Debian base image (no registry), Django migrating the host's PostgreSQL as the release command,
nginx serving the collected static files and passing the rest to gunicorn, behind the edge. The
PostgreSQL is set up with the very lines of the example's README."""

from __future__ import annotations

import shutil

import pytest
from support.middock import ROOT
from support.postgres import app_addresses, host_gateway, postgres_cluster
from support.web import http_get

pytest_plugins = ["support.debian_base"]

EXAMPLE = ROOT / "examples" / "django-postgres"
LOCAL_FILES = shutil.ignore_patterns("__pycache__", "*.pyc", "db.sqlite3", "staticfiles", ".env", ".venv")
README_HOST = "172.17.0.1"  # the README's host address: "put the address `networks` prints if it is not"


def readme_lines() -> tuple[list[str], list[str]]:
    """The postgresql.conf and the pg_hba.conf lines of the README's "PostgreSQL on the host"."""
    section = (EXAMPLE / "README.md").read_text().split("## PostgreSQL on the host\n", 1)[1].split("\n## ", 1)[0]
    block = [line.strip() for line in section.splitlines() if line.startswith("    ")]
    settings = [line for line in block if line.startswith("listen_addresses")]
    return settings, [line for line in block if line.startswith("host ")]


@pytest.fixture
def readme_postgres(docker_client):
    """PostgreSQL on the host as the README sets it up: its role and database, its
    listen_addresses and pg_hba.conf lines as written (nothing else lets the app in)."""
    settings, hba = readme_lines()
    assert len(settings) == 1 and README_HOST in settings[0] and hba, (settings, hba)
    settings = [settings[0].replace(README_HOST, app_addresses()["host"])]  # as the README says, where it differs
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
