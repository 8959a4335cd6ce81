#!/bin/sh
# The web: web/ on the base image, with the site its build renders (a page a module, each
# also gzipped for the browsers that take it). Needs nothing of the api image, so it runs
# beside build-1-api.sh (the same number).
set -eu
image="${MIDDOCK_APP:-docs}-web:${IMAGE_TAG:-dev}"
echo "building $image"
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
cp -r web "$ctx/web"
cat >"$ctx/Dockerfile" <<'DOCKERFILE'
FROM middock-example/python
COPY web /srv/web
RUN ["python3", "/srv/web/render.py", "/srv/web/site"]
USER 65534:65534
CMD ["python3", "/srv/web/web.py"]
DOCKERFILE
docker build -t "$image" "$ctx"
