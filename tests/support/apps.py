"""The tests' apps: the busybox two-service app and the web app behind the edge."""

from __future__ import annotations

from support.middock import Workdir

BUILD_WEB = """#!/bin/sh
set -e
echo "building $MIDDOCK_APP-web:$IMAGE_TAG"
ctx=$(mktemp -d)
cp page.html "$ctx/index.html"
cat > "$ctx/Dockerfile" <<'DOCKERFILE'
FROM middock-test/busybox
COPY index.html /www/index.html
CMD ["httpd", "-f", "-p", "8080", "-h", "/www"]
DOCKERFILE
docker build -q -t "$MIDDOCK_APP-web:$IMAGE_TAG" "$ctx"
rm -rf "$ctx"
"""


COMPOSE = """services:
  web:
    image: ${{MIDDOCK_APP}}-web:${{IMAGE_TAG}}
    ports: ["127.0.0.1:{port}:8080"]
    stop_grace_period: 1s
  worker:
    image: middock-test/busybox
    command: ["sleep", "1000000"]
    stop_grace_period: 1s
"""


def write_busybox_app(work: Workdir, port: int, page: str = "v1") -> None:
    """The two-service app of the tests: `web` serves page.html, `worker` sleeps."""
    work.write("docker/build-web.sh", BUILD_WEB, executable=True)
    work.write("compose.yaml", COMPOSE.format(port=port))
    work.write("page.html", page)


WEB_APP_BUILD = """#!/bin/sh
set -e
ctx=$(mktemp -d)
cp -r www "$ctx/www"
cat > "$ctx/Dockerfile" <<'DOCKERFILE'
FROM middock-test/busybox
COPY www /www
CMD ["sh", "-c", "echo \\"$VERSION\\" > /www/index.html && hostname > /www/host.html && exec httpd -f -p 8080 -h /www"]
DOCKERFILE
docker build -q -t "$MIDDOCK_APP-web:$IMAGE_TAG" "$ctx"
rm -rf "$ctx"
"""


SLOW_CGI = """#!/bin/sh
sleep 3
printf 'Content-Type: text/plain\\r\\n\\r\\nslow %s\\n' "$(cat /www/index.html)"
"""


WEB_APP_COMPOSE = """services:
  web:
    image: ${MIDDOCK_APP}-web:${IMAGE_TAG}
    environment:
      VERSION: ${VERSION:-unset}
    ports: ["8080:8080"]
    init: true
    stop_grace_period: 1s
  worker:
    image: middock-test/busybox
    command: ["sleep", "1000000"]
    init: true
    stop_grace_period: 1s
"""


def write_web_app(work: Workdir, version: str = "v1", compose: str = WEB_APP_COMPOSE, settings: str = "") -> None:
    """The tests' app behind the edge: `web` answers its VERSION on / and, after 3 seconds,
    on /cgi-bin/slow (the requests in flight at a switch); `worker` sleeps."""
    work.write("docker/build-web.sh", WEB_APP_BUILD, executable=True)
    work.write("www/cgi-bin/slow", SLOW_CGI, executable=True)
    work.write("compose.yaml", compose)
    work.write("middock.env", f"MIDDOCK_WEB=web:8080\nVERSION={version}\n{settings}")
