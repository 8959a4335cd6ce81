"""examples/django-postgres deployed by middock as a user would: the example copied into a work
tree, pushed with the real git client, its two images built by its own scripts from the local
Debian base image (no registry), Django migrating the host's PostgreSQL as the release command,
nginx serving the collected static files and passing the rest to gunicorn, behind the edge."""

from __future__ import annotations

import shutil

from conftest import ROOT, http_get

pytest_plugins = ["debian_base"]

EXAMPLE = ROOT / "examples" / "django-postgres"
LOCAL_FILES = shutil.ignore_patterns("__pycache__", "*.pyc", "db.sqlite3", "staticfiles", ".env", ".venv")


def test_django_example_migrates_serves_notes_static_files_and_health(server, work, app, postgres, debian_base):
    postgres.query("drop table if exists guestbook_note, django_migrations")
    server.start_edge()
    shutil.copytree(EXAMPLE, work.path, dirs_exist_ok=True, ignore=LOCAL_FILES)
    server.middock(
        "config:set",
        app,
        f"DATABASE_URL={postgres.container_url}",
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
    assert postgres.query("select to_regclass('guestbook_note')").strip() == "guestbook_note"
    assert postgres.query("select app || ' ' || name from django_migrations").split() == ["guestbook", "0001_initial"]

    postgres.query("insert into guestbook_note (text, created) values ('Signed by psql <3', now())")
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

    # A config change redeploys: the release command finds nothing to migrate, the notes stay.
    config = server.middock("config:set", app, "GREETING=Hi from a config var")
    assert "No migrations to apply." in config.stdout + config.stderr
    page = http_get(port, "/")
    assert "<h1>Hi from a config var</h1>" in page and "release 2" in page and "Signed by psql" in page
