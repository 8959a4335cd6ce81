#!/bin/sh
# The app service (gunicorn's place in the seed): app/ on the base image, started the way you
# start it in development, `python3 app/hello.py`.
set -eu
image="${MIDDOCK_APP:-hello}-app:${IMAGE_TAG:-dev}"
echo "building $image"
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
cp -r app "$ctx/app"
cat >"$ctx/Dockerfile" <<'DOCKERFILE'
FROM middock-example/python
COPY app /srv/app
USER 65534:65534
CMD ["python3", "/srv/app/hello.py"]
DOCKERFILE
docker build -q -t "$image" "$ctx"
