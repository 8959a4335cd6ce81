"""The edge's plan as plain data, without Docker or proxies: what a release beside another runs,
and what HAProxy, Caddy and systemd are told."""

from __future__ import annotations

import dataclasses
import ipaddress
from pathlib import Path

import pytest

from middock_receiver.edge import caddy, haproxy, proxies, routes
from middock_receiver.edge.settings import EdgePaths, EdgeSettings, parse_setting
from middock_receiver.errors import MiddockError
from middock_receiver.runtime import networks, overrides, side_by_side
from middock_receiver.runtime.side_by_side import Web
from middock_receiver.server import daemons

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
    # a volume's driver and options are for its making (ensure_shared): Compose refuses them beside `external`
    optioned = {**RESOLVED, "volumes": {"media": {"name": "shop_media", "driver_opts": {"type": "none"}}}}
    assert side_by_side.beside(optioned, "shop", "shop_r7", Web("web", 8000), [20001])["volumes"]["media"] == {
        "name": "shop_media",
        "external": True,
    }
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
    resolved = {**RESOLVED, "services": {**RESOLVED["services"], "worker": worker}}
    side_by_side.check(resolved, Web("web", 8000), ["worker"])  # no refusal
    with pytest.raises(MiddockError, match="sets container_name"):
        side_by_side.check(resolved, Web("web", 8000), [])
    config = side_by_side.beside(resolved, "shop", "shop_r7", Web("web", 8000), [20001])
    assert config["services"]["worker"]["container_name"] == "w"  # it never runs twice, so it keeps both
    assert config["services"]["worker"]["ports"] == worker["ports"]


def layout(paths: EdgePaths, https_redirect: str | None = ":8443") -> haproxy.Layout:
    return haproxy.Layout(
        paths.haproxy_socket, paths.live_map, paths.domains_map, paths.domains_socket, paths.domains_http_socket,
        19001, https_redirect,
    )  # fmt: skip


FRONTENDS = [
    haproxy.Frontend("shop", 8001, True, {"blue": ("127.0.0.1:20001", "127.0.0.1:20002")}, "blue"),
    haproxy.Frontend("blog", 8002, False, {"blue": ("127.0.0.1:20010",), "green": ("10.9.0.3:30001",)}, "green"),
]


def test_haproxy_configuration_and_maps():
    paths = EdgePaths(Path("/srv/deploy"))
    config = haproxy.render_config(FRONTENDS, layout(paths))
    assert "frontend shop\n    bind :8001\n" in config
    assert "frontend blog\n    bind 127.0.0.1:8002\n" in config  # it has domains: loopback only
    assert "backend shop.blue\n    balance roundrobin\n    server blue1 127.0.0.1:20001\n    server blue2" in config
    assert config.endswith("backend shop.green\n    balance roundrobin\n")  # both slots, from the first route on
    assert f"use_backend %[fe_name,map({paths.live_map},no_release)]" in config
    assert "option idle-close-on-response" in config
    assert "server green-task1 10.9.0.3:30001 check inter 1s fall 2 rise 2\n" in config  # a task on another node
    assert f"bind unix@{paths.domains_socket} mode 600" in config
    assert f"map({paths.domains_map}),map({paths.live_map},no_release)]" in config  # a domain's app, its slot
    assert "http-request redirect code 308 location https://%[req.hdr(host),field(1,:),lower]:8443%[pathq]" in config
    assert "bind 127.0.0.1:19001" in config and "url_param(domain)" in config  # Caddy asks before a certificate
    assert haproxy.render_map(haproxy.live_entries(FRONTENDS)) == "blog blog.green\nshop shop.blue\n"
    plain = haproxy.render_config(FRONTENDS, layout(paths, None))
    assert "_domains_http" not in plain and "redirect" not in plain  # TLS off: Caddy hands HTTP to _domains


def test_only_a_new_frontend_or_new_settings_need_a_reload():
    paths = EdgePaths(Path("/srv/deploy"))
    digest = haproxy.layout_of(haproxy.render_config(FRONTENDS, layout(paths)))
    moved = [FRONTENDS[0], haproxy.Frontend("blog", 8002, False, {"blue": ("127.0.0.1:20011",)}, "blue")]
    assert haproxy.layout_of(haproxy.render_config(moved, layout(paths))) == digest  # runtime: servers, map
    for changed in (
        haproxy.render_config(FRONTENDS[:1], layout(paths)),  # an app leaves
        haproxy.render_config([FRONTENDS[0], haproxy.Frontend("blog", 8002, True, {}, "blue")], layout(paths)),
        haproxy.render_config(FRONTENDS, layout(paths, "")),  # the HTTPS port moved to 443
    ):
        assert haproxy.layout_of(changed) != digest


def test_maintenance_is_a_map_entry_and_only_a_new_page_reloads():
    paths = EdgePaths(Path("/srv/deploy"))
    page = Path("/srv/deploy/.middock/shop/maintenance.html")
    shop = haproxy.Frontend("shop", 8001, True, {"blue": ("127.0.0.1:20001",)}, "blue", page, "d1")
    config = haproxy.render_config([shop], layout(paths))
    assert (
        "backend shop.maintenance\n    # page d1\n    http-request return status 503 "
        f'content-type "text/html; charset=utf-8" file {page} hdr Retry-After 60\n'
    ) in config
    on = dataclasses.replace(shop, maintenance=True)
    assert haproxy.live_entries([shop]) == {"shop": "shop.blue"} and haproxy.live_entries([on]) == {
        "shop": "shop.maintenance"
    }
    assert haproxy.layout_of(haproxy.render_config([on], layout(paths))) == haproxy.layout_of(config)  # runtime
    new_page = dataclasses.replace(shop, page_digest="d2")
    assert haproxy.layout_of(haproxy.render_config([new_page], layout(paths))) != haproxy.layout_of(config)
    no_page = dataclasses.replace(on, page=None)  # live since before maintenance mode: its slot, no page yet
    assert haproxy.live_entries([no_page]) == {"shop": "shop.blue"}


def test_runtime_changes_move_add_and_remove_servers_and_map_entries():
    current = {
        "blue1": (haproxy.Server("blue1", "127.0.0.1", 20001), False),
        "blue2": (haproxy.Server("blue2", "127.0.0.1", 20002), True),
        "blue3": (haproxy.Server("blue3", "127.0.0.1", 20003), False),
    }
    wanted = haproxy.servers("blue", ["127.0.0.1:20001", "127.0.0.1:20005", "10.0.0.9:30001"])
    assert haproxy.server_changes("a.blue", current, wanted) == [
        "set server a.blue/blue2 addr 127.0.0.1 port 20005",
        "enable server a.blue/blue2",
        "add server a.blue/blue-task3 10.0.0.9:30001 check inter 1s fall 2 rise 2",
        "enable health a.blue/blue-task3",
        "enable server a.blue/blue-task3",
        "set server a.blue/blue-task3 health up",
        "disable server a.blue/blue3",
        "del server a.blue/blue3",
    ]
    assert haproxy.server_changes("a.blue", current, wanted[:1]) == [
        "del server a.blue/blue2",
        "disable server a.blue/blue3",
        "del server a.blue/blue3",
    ]
    live = Path("/e/live.map")
    assert haproxy.map_changes(
        live, {"a": "a.blue", "b": "b.blue"}, {"a": "a.green", "c": "c.blue"}, {"a", "b", "c"}
    ) == [
        f"set map {live} a a.green",
        f"del map {live} b",
        f"add map {live} c c.blue",
    ]
    assert haproxy.map_changes(live, {"z": "z.blue"}, {}, {"a"}) == []  # other apps' entries are left alone


def test_what_haproxy_says_of_its_workers_state_is_read():
    assert haproxy.parse_map("0x55a9 x.test a\n0x7fe6 y.test b\n\n") == {"x.test": "a", "y.test": "b"}
    state = haproxy.parse_servers(
        "1\n# be_id be_name srv_id srv_name srv_addr ...\n"
        "7 a.blue 1 blue1 127.0.0.1 2 0 1 1 2 1 0 2 0 0 0 0 - 18200 - 0 0 - - 0\n"
        "7 a.blue 2 blue2 127.0.0.1 0 1 1 1 2 1 0 2 0 0 0 0 - 18201 - 0 0 - - 0\n"
    )
    assert state == {
        "a.blue": {
            "blue1": (haproxy.Server("blue1", "127.0.0.1", 18200), False),
            "blue2": (haproxy.Server("blue2", "127.0.0.1", 18201), True),
        }
    }


def test_caddy_configuration_never_names_an_app_or_a_domain():
    paths = EdgePaths(Path("/srv/deploy"))
    settings = EdgeSettings(http_port=8080, https_port=8443, acme_ca="https://ca/dir", acme_ca_root="/ca.pem")
    config = caddy.render(settings, paths, 19001)
    servers = config["apps"]["http"]["servers"]
    assert servers["https"]["listen"] == [":8443"] and servers["https"]["tls_connection_policies"] == [{}]
    upstream = servers["https"]["routes"][0]["handle"][0]["upstreams"]
    assert upstream == [{"dial": f"unix/{paths.domains_socket}"}]
    assert servers["http"]["listen"] == [":8080"]
    assert servers["http"]["routes"][0]["handle"][0]["upstreams"] == [{"dial": f"unix/{paths.domains_http_socket}"}]
    tls = config["apps"]["tls"]["automation"]
    assert tls["on_demand"] == {"ask": "http://127.0.0.1:19001/ask"}
    assert tls["policies"] == [
        {
            "issuers": [{"module": "acme", "ca": "https://ca/dir", "trusted_roots_pem_files": ["/ca.pem"]}],
            "on_demand": True,
            "disable_ocsp_stapling": True,
        }
    ]
    assert config["admin"]["listen"] == f"unix/{paths.caddy_socket}"
    assert config["apps"]["pki"]["certificate_authorities"]["local"]["install_trust"] is False
    plain = caddy.render(EdgeSettings(tls="off"), paths, 19001)
    assert list(plain["apps"]["http"]["servers"]) == ["http"] and "tls" not in plain["apps"]
    assert plain["apps"]["http"]["servers"]["http"]["routes"][0]["handle"][0]["upstreams"] == [
        {"dial": f"unix/{paths.domains_socket}"}
    ]
    internal = caddy.render(EdgeSettings(tls="internal"), paths, 19001)
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


def test_a_long_home_keeps_its_sockets_in_a_short_private_folder(tmp_path):
    assert EdgePaths(Path("/home/deploy")).run == Path("/home/deploy/.middock/_edge/run")
    home = tmp_path / ("x" * 100)
    home.mkdir()
    long = EdgePaths(home)
    assert long.run.parent == Path("/run/middock") / str(home.stat().st_uid)  # the home owner's, whoever asks
    assert long.run.name.startswith("edge-") and len(str(long.haproxy_master_socket)) < 100


def test_systemd_units_run_the_proxies_as_the_deploy_user():
    owner = daemons.Owner("deploy", 1001, 1001, Path("/home/deploy"))
    paths = EdgePaths(owner.home)
    haproxy_daemon = proxies.daemon("haproxy", paths, owner)
    unit = daemons.render_unit(haproxy_daemon, owner)
    assert "User=deploy\n" in unit and "AmbientCapabilities=CAP_NET_BIND_SERVICE\n" in unit
    assert f"ExecStart=/usr/sbin/haproxy -Ws -f {paths.haproxy_config}" in unit and "Type=notify" in unit
    assert "ExecReload=/bin/kill -USR2 $MAINPID" in unit and "WantedBy=multi-user.target" in unit
    assert f"ExecStartPre=/usr/bin/install -d -m 0700 {paths.run}\n" in unit  # never a folder another user made
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


def test_a_projects_own_networks_get_subnets_of_middocks_ranges(tmp_path):
    config = {
        "networks": {
            "default": {"name": "shop_r7_default"},
            "back": {},
            "shared": {"name": "shared-net"},
            "outside": {"name": "theirs", "external": True},
        }
    }
    assert networks.own(config, "shop_r7") == {"default": "shop_r7_default", "back": "shop_r7_back"}
    route = tmp_path / "route"
    route.write_text(
        "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\tMTU\tWindow\tIRTT\n"
        "eth0\t00000000\t0101A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n"  # the default route: no clash
        "docker0\t000011AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n"  # 172.17.0.0/16
        "vpn0\t0000C80A\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n"  # 10.200.0.0/16: taken by a VPN
    )
    routes_found = networks.host_routes(route)
    assert [str(r) for r in routes_found] == ["172.17.0.0/16", "10.200.0.0/16"]
    first = networks.free_subnet(routes_found)
    assert str(first) == "10.201.0.0/26"
    assert str(networks.free_subnet([*routes_found, first])) == "10.201.0.64/26"
    with pytest.raises(MiddockError, match="no free subnet"):
        networks.free_subnet([ipaddress.IPv4Network("10.0.0.0/8")])
