#!/bin/sh
# The frontend image: nginx, docker/nginx.conf and the static files collected in the app image
# (so this runs after build-1-app.sh). NGINX_IMAGE (a config var) replaces its base nginx:1.27.
set -eu
app="${MIDDOCK_APP:-myapp}-app:${IMAGE_TAG:-dev}"
image="${MIDDOCK_APP:-myapp}-frontend:${IMAGE_TAG:-dev}"
echo "building $image"
set -- --build-arg "APP_IMAGE=$app"
if [ -n "${NGINX_IMAGE:-}" ]; then set -- "$@" --build-arg "NGINX_IMAGE=$NGINX_IMAGE"; fi
docker build -q --force-rm "$@" -f docker/frontend.Dockerfile -t "$image" docker
