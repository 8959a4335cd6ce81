"""The deploy core end to end: real git pushes to a real Docker Engine."""

from __future__ import annotations

import json

from conftest import free_port, http_get, write_busybox_app


def test_push_v1_then_v2_serves_each_and_lists_both(server, work, app):
    port = free_port()
    write_busybox_app(work, port, "v1")
    work.commit("first version")
    first = work.push()
    assert first.returncode == 0, first.stderr
    assert "-----> Release 1" in first.stderr and "is live" in first.stderr
    assert http_get(port) == "v1"

    work.write("page.html", "v2")
    work.commit("second version")
    second = work.push()
    assert "-----> Release 2" in second.stderr
    assert http_get(port) == "v2"

    releases = json.loads(server.middock("releases", app, "--json").stdout)
    assert [(r["number"], r["result"], r["live"]) for r in releases] == [
        (1, "succeeded", False),
        (2, "succeeded", True),
    ]
    assert releases[1]["subject"] == "second version"
