#!/bin/sh
# The frontend (nginx's place in the seed): serves frontend/static/ itself and hands every
# other request to the app service.
set -eu
image="${MIDDOCK_APP:-hello}-frontend:${IMAGE_TAG:-dev}"
echo "building $image"
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
cp -r frontend "$ctx/frontend"
cat >"$ctx/Dockerfile" <<'DOCKERFILE'
FROM middock-example/python
COPY frontend /srv/frontend
USER 65534:65534
CMD ["python3", "/srv/frontend/serve.py"]
DOCKERFILE
docker build -q -t "$image" "$ctx"
