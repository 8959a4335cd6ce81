#!/bin/sh
# The api: api/ on the base image, with the index it searches built into the image, and its
# tests run against that index. Needs nothing of the web image, so it runs beside
# build-1-web.sh (the same number).
set -eu
image="${MIDDOCK_APP:-docs}-api:${IMAGE_TAG:-dev}"
echo "building $image"
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
cp -r api "$ctx/api"
cat >"$ctx/Dockerfile" <<'DOCKERFILE'
FROM middock-example/python
COPY api /srv/api
RUN ["python3", "/srv/api/index.py", "/srv/api/symbols.db"]
RUN ["python3", "/srv/api/test_api.py"]
USER 65534:65534
CMD ["python3", "/srv/api/api.py"]
DOCKERFILE
docker build -t "$image" "$ctx"
