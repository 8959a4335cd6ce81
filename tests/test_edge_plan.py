"""The edge's plan as plain data, without Docker or proxies: what a release beside another runs,
and what HAProxy, Caddy and systemd are told."""

from __future__ import annotations

from pathlib import Path

import pytest

from middock_receiver import daemons
from middock_receiver.edge import caddy, haproxy, proxies, routes
from middock_receiver.edge.settings import EdgePaths, EdgeSettings, parse_setting
from middock_receiver.errors import MiddockError
from middock_receiver.runtime import overrides, side_by_side
from middock_receiver.runtime.side_by_side import Web

RESOLVED = {
    "name": "shop",
    "services": {
        "web": {
            "image": "sha256:aaa",
            "ports": [{"mode": "ingress", "target": 8000, "published": "8080", "protocol": "tcp"}],
            "networks": {"default": None, "back": None},
            "volumes": [{"type": "volume", "source": "media", "target": "/media"}],
        },
        "worker": {"image": "sha256:bbb", "networks": {"back": None, "shared": None}},
    },
    "volumes": {"media": {"name": "shop_media"}, "outside": {"name": "theirs", "external": True}},
    "networks": {
        "default": {"name": "shop_default"},
        "back": {"name": "shop_back"},
        "shared": {"name": "shared-net"},
    },
}


def test_web_target_and_its_refusals():
    assert side_by_side.web_target({"MIDDOCK_WEB": "web:8000"}) == Web("web", 8000)
    assert side_by_side.web_target({}) is None
    for bad in ("web", "web:", ":80", "web:99999", "web:http"):
        with pytest.raises(MiddockError, match="SERVICE:PORT"):
            side_by_side.web_target({"MIDDOCK_WEB": bad})
    with pytest.raises(MiddockError, match="MIDDOCK_HEALTH_PATH"):
        side_by_side.health_path({"MIDDOCK_HEALTH_PATH": "up"})


def test_a_release_beside_another_keeps_volumes_and_named_networks_and_owns_the_rest():
    config = side_by_side.beside(RESOLVED, "shop", "shop_r7", Web("web", 8000), [20001, 20002])
    assert config["name"] == "shop_r7"
    assert config["services"]["web"]["ports"] == [
        {"target": 8000, "host_ip": "127.0.0.1", "published": "20001-20002", "protocol": "tcp"}
    ]
    assert config["volumes"]["media"] == {"name": "shop_media", "external": True}
    assert config["volumes"]["outside"] == {"name": "theirs", "external": True}
    assert config["networks"]["default"] == {} and config["networks"]["back"] == {}
    assert config["networks"]["shared"] == {"name": "shared-net", "external": True}
    assert RESOLVED["services"]["web"]["ports"][0]["published"] == "8080"  # the pinned one is untouched
    assert side_by_side.shared_volumes(RESOLVED, "shop") == {"shop_media": {"name": "shop_media", "key": "media"}}
    assert list(side_by_side.shared_networks(RESOLVED, "shop")) == ["shared-net"]


@pytest.mark.parametrize(
    ("change", "stop_first", "message"),
    [
        ({"worker": {"image": "x", "container_name": "w"}}, [], "sets container_name"),
        ({"worker": {"image": "x", "ports": [{"target": 9, "published": "9000"}]}}, [], "publishes host port 9000"),
        ({}, ["web"], "cannot be in MIDDOCK_STOP_FIRST"),
        ({}, ["nope"], "MIDDOCK_STOP_FIRST names service 'nope'"),
        ({"web": {"image": "x", "deploy": {"replicas": 0}}}, [], "scaled to 0"),
    ],
)
def test_what_two_releases_cannot_share_is_refused(change, stop_first, message):
    resolved = {**RESOLVED, "services": {**RESOLVED["services"], **change}}
    with pytest.raises(MiddockError, match=message):
        side_by_side.check(resolved, Web("web", 8000), stop_first)


def test_fixed_ports_and_names_are_fine_on_a_service_that_stops_first():
    worker = {"image": "x", "container_name": "w", "ports": [{"target": 9, "published": "9000"}]}
    side_by_side.check(
        {**RESOLVED, "services": {**RESOLVED["services"], "worker": worker}}, Web("web", 8000), ["worker"]
    )


def test_haproxy_configuration_and_map():
    paths = EdgePaths(Path("/srv/deploy"))
    frontends = [
        haproxy.Frontend("shop", 8001, True, {"blue": ("127.0.0.1:20001", "127.0.0.1:20002")}, "blue"),
        haproxy.Frontend("blog", 8002, False, {"blue": ("127.0.0.1:20010",), "green": ("10.9.0.3:30001",)}, "green"),
    ]
    config = haproxy.render_config(frontends, paths.haproxy_socket, paths.live_map)
    assert "frontend shop\n    bind :8001\n" in config
    assert "frontend blog\n    bind 127.0.0.1:8002\n" in config  # behind Caddy: loopback only
    assert "backend shop.blue\n    balance roundrobin\n    server blue1 127.0.0.1:20001\n    server blue2" in config
    assert f"use_backend %[fe_name,map({paths.live_map},no_release)]" in config
    assert "option idle-close-on-response" in config
    assert "server green1 10.9.0.3:30001 check inter 1s fall 2 rise 2\n" in config  # a task on another node
    assert haproxy.render_map(frontends) == "shop shop.blue\nblog blog.green\n"


def test_caddy_configuration():
    paths = EdgePaths(Path("/srv/deploy"))
    assert caddy.render([], EdgeSettings(), paths)["apps"]["http"]["servers"] == {}
    settings = EdgeSettings(http_port=8080, https_port=8443, acme_ca="https://ca/dir", acme_ca_root="/ca.pem")
    config = caddy.render([caddy.Site("shop", ("shop.example", "www.shop.example"), 8001)], settings, paths)
    servers = config["apps"]["http"]["servers"]
    assert servers["https"]["listen"] == [":8443"]
    assert servers["https"]["routes"][0]["handle"][0]["upstreams"] == [{"dial": "127.0.0.1:8001"}]
    location = servers["redirect"]["routes"][0]["handle"][0]["headers"]["Location"]
    assert location == ["https://{http.request.host}:8443{http.request.uri}"]
    policy = config["apps"]["tls"]["automation"]["policies"][0]
    assert policy["subjects"] == ["shop.example", "www.shop.example"]
    assert policy["issuers"] == [{"module": "acme", "ca": "https://ca/dir", "trusted_roots_pem_files": ["/ca.pem"]}]
    assert config["admin"]["listen"] == f"unix/{paths.caddy_socket}"
    assert config["apps"]["pki"]["certificate_authorities"]["local"]["install_trust"] is False
    plain = caddy.render([caddy.Site("shop", ("shop.example",), 8001)], EdgeSettings(tls="off"), paths)
    assert list(plain["apps"]["http"]["servers"]) == ["http"] and "tls" not in plain["apps"]
    internal = caddy.render([caddy.Site("shop", ("shop.example",), 8001)], EdgeSettings(tls="internal"), paths)
    assert internal["apps"]["tls"]["automation"]["policies"][0]["issuers"] == [{"module": "internal"}]


def test_domains_and_edge_settings_are_checked():
    assert routes.check_domain("www.example.org") == "www.example.org"
    for bad in ("example", "ex ample.org", "-a.org", "a-.org", "a..org", "1.2.3.4", "a_b.org", "x" * 64 + ".org"):
        with pytest.raises(MiddockError, match="invalid domain"):
            routes.check_domain(bad)
    assert parse_setting("http-port", "8080") == ("http_port", 8080)
    assert parse_setting("tls", "internal") == ("tls", "internal")
    for key, value in (("http-port", "0"), ("https-port", "x"), ("tls", "maybe"), ("acme-ca", "http://x/dir")):
        with pytest.raises(MiddockError):
            parse_setting(key, value)
    with pytest.raises(MiddockError, match="unknown edge setting"):
        parse_setting("color", "blue")


def test_a_long_home_keeps_its_sockets_in_a_short_private_folder():
    assert EdgePaths(Path("/home/deploy")).run == Path("/home/deploy/.middock/_edge/run")
    long = EdgePaths(Path("/tmp/" + "x" * 100))
    assert long.run.parent == Path("/tmp") and len(str(long.haproxy_master_socket)) < 100


def test_systemd_units_run_the_proxies_as_the_deploy_user():
    owner = daemons.Owner("deploy", 1001, 1001, Path("/home/deploy"))
    paths = EdgePaths(owner.home)
    haproxy_daemon = proxies.daemon("haproxy", paths, owner)
    unit = daemons.render_unit(haproxy_daemon, owner)
    assert "User=deploy\n" in unit and "AmbientCapabilities=CAP_NET_BIND_SERVICE\n" in unit
    assert f"ExecStart=/usr/sbin/haproxy -Ws -f {paths.haproxy_config}" in unit and "Type=notify" in unit
    assert "ExecReload=/bin/kill -USR2 $MAINPID" in unit and "WantedBy=multi-user.target" in unit
    caddy_unit = daemons.render_unit(proxies.daemon("caddy", paths, owner), owner)
    assert f"ExecStart=/usr/bin/caddy run --config {paths.caddy_config}" in caddy_unit
    assert f'"XDG_DATA_HOME={paths.caddy_data}"' in caddy_unit
    assert daemons.unit_name(haproxy_daemon, owner) == "middock-haproxy-deploy.service"
    assert haproxy_daemon.background[1:3] == ["-W", "-D"] and haproxy_daemon.forks


def test_scale_counts_and_the_default_restart_policy():
    assert overrides.parse_counts(["web=3", "worker=0"]) == {"web": 3, "worker": 0}
    for bad in ("web", "web=", "web=-1", "web=x", "web=101", "=2"):
        with pytest.raises(MiddockError):
            overrides.parse_counts([bad])
    config = overrides.apply(RESOLVED, {"worker": 4}, web="web")
    assert config["services"]["worker"]["scale"] == 4 and config["services"]["worker"]["restart"] == "unless-stopped"
    kept = {**RESOLVED, "services": {"w": {"image": "x", "restart": "no", "deploy": {"replicas": 2}}}}
    assert overrides.apply(kept, {"w": 3})["services"]["w"] == {
        "image": "x",
        "restart": "no",
        "deploy": {"replicas": 3},
        "scale": 3,
    }
    with pytest.raises(MiddockError, match="publishes host port 8080"):
        overrides.check_counts(RESOLVED, {"web": 2})
    overrides.check_counts(RESOLVED, {"web": 2}, web="web")  # behind the edge it publishes none of its own
