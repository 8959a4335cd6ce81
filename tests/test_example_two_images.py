"""examples/two-images deployed as a user would: the example copied into a work tree and pushed
with the real git client, its two images built side by side by their own scripts from the
server's Python (no registry), behind the edge, a config var set with `config:set` first."""

from __future__ import annotations

import shutil

from support.edge import deploy
from support.middock import ROOT, pusher_lines
from support.web import http_get

LOCAL_FILES = shutil.ignore_patterns("__pycache__", "*.pyc", "symbols.db", "site")


def test_two_images_build_side_by_side_and_the_site_searches_through_the_api(server, work, app):
    """The push runs build-1-api.sh and build-1-web.sh at once, each line after its script's
    name (the api's index and tests, the web's pages); the site shows the config var and both
    images' tag, and its search asks the api and links to the rendered pages."""
    server.start_edge()
    server.middock("config:set", app, "TITLE=Docs from a config var", "--no-deploy")
    shutil.copytree(ROOT / "examples" / "two-images", work.path, dirs_exist_ok=True, ignore=LOCAL_FILES)
    pushed = deploy(work, "the two-images example")

    steps = [line for line in pusher_lines(pushed) if line.startswith("-----> Running ")]
    assert steps == [
        "-----> Running docker/build-0-base.sh",
        "-----> Running docker/build-1-api.sh, docker/build-1-web.sh side by side",
    ]
    assert "build-1-api.sh | indexed " in pushed and "build-1-api.sh | OK" in pushed
    assert "build-1-web.sh | rendered 149 pages" in pushed
    port = server.app_port(app)
    tag = work.git("rev-parse", "HEAD").stdout[:12]
    home = http_get(port)
    assert "<h1><a href=/>Docs from a config var</a></h1>" in home
    assert f"web {tag}, api {tag}" in home
    assert "<a href=/docs/json.html>json</a>" in home
    found = http_get(port, "/search?q=urlopen")
    assert "<a href=/docs/urllib.request.html#-urlopen>urllib.request.urlopen(" in found
    assert 'name="-urlopen"' in http_get(port, "/docs/urllib.request.html")
    assert http_get(port, "/health") == "ok\n"
