#!/bin/sh
# The app image: Django under gunicorn, from app/ and docker/app.Dockerfile. PYTHON_IMAGE (a
# config var) replaces its base python:3.12-slim, e.g. with a local image that has Django,
# gunicorn and psycopg2 already, on a server that reaches no image registry.
set -eu
image="${MIDDOCK_APP:-myapp}-app:${IMAGE_TAG:-dev}"
echo "building $image"
set --
if [ -n "${PYTHON_IMAGE:-}" ]; then set -- --build-arg "PYTHON_IMAGE=$PYTHON_IMAGE"; fi
docker build -q --force-rm "$@" -f docker/app.Dockerfile -t "$image" app
