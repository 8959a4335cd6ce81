"""Settings of the guestbook, read from the environment, so one image runs anywhere.

- DATABASE_URL: postgresql://USER:PASSWORD@HOST:PORT/NAME (percent-encode special characters
  in the password; `?sslmode=require` and other libpq options may follow). Unset: a local
  SQLite file, for `python3 manage.py runserver` in development.
- SECRET_KEY: set it (config:set) in production.
- DEBUG=1 in development; ALLOWED_HOSTS: comma-separated names, default `*`.
- GREETING and MIDDOCK_RELEASE (the release number middock deploys) are shown on the page.

Works on Django 3.2 (Debian 12's python3-django) to 5.x.
"""

import os
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = os.environ.get("SECRET_KEY") or "insecure-development-key-set-SECRET_KEY-in-production"
DEBUG = os.environ.get("DEBUG") == "1"
ALLOWED_HOSTS = [name.strip() for name in os.environ.get("ALLOWED_HOSTS", "*").split(",") if name.strip()]

INSTALLED_APPS = [
    "django.contrib.staticfiles",
    "guestbook",
]
MIDDLEWARE = [
    "mysite.health.health_check",
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
]
ROOT_URLCONF = "mysite.urls"
WSGI_APPLICATION = "mysite.wsgi.application"
TEMPLATES = [{"BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": True}]


def database(url):
    """DATABASES["default"] from DATABASE_URL, with the standard library only."""
    if not url:
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": BASE_DIR / "db.sqlite3"}
    parts = urlsplit(url)
    if parts.scheme not in ("postgres", "postgresql"):
        raise ValueError(f"DATABASE_URL must start with postgresql://, not {parts.scheme}://")
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": unquote(parts.path.lstrip("/")),
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": parts.hostname or "",
        "PORT": str(parts.port or ""),
        "OPTIONS": dict(parse_qsl(parts.query)),
    }


DATABASES = {"default": database(os.environ.get("DATABASE_URL"))}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

USE_TZ = True
TIME_ZONE = "UTC"

# `collectstatic` (run when the image is built) gathers the files here; the frontend image
# copies them and nginx serves them at /static/.
STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"

# Errors to stderr, where `docker compose logs` finds them (Django only prints them with DEBUG).
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
}
