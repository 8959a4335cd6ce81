"""The table of settings, without Docker: the README shows it as the module renders it, every
`MIDDOCK_*` name the package reads is in it or named as middock's own, and what reads a setting
takes its default from it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from middock_receiver import settings
from middock_receiver.edge.settings import EdgeSettings
from middock_receiver.errors import MiddockError
from middock_receiver.state import apps

ROOT = Path(__file__).resolve().parents[1]


def test_the_readme_shows_the_table_as_the_module_renders_it() -> None:
    readme = (ROOT / "README.md").read_text()
    assert all(marker in readme for marker in settings.MARKERS), "the README has lost its settings table's markers"
    assert settings.readme_table(readme) == settings.markdown(), (
        "the README's settings table is out of date: paste in `python3 -m middock_receiver.settings --markdown`"
    )


def test_the_table_prints_from_the_command_line() -> None:
    printed = subprocess.run(
        [sys.executable, "-m", "middock_receiver.settings", "--markdown"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert printed == settings.markdown()


def test_every_middock_variable_of_the_package_is_in_the_table_or_named_as_plumbing() -> None:
    known = set(settings.SETTINGS) | set(settings.PROVIDED) | set(settings.INTERNAL)
    found = set()
    for path in (ROOT / "middock_receiver").rglob("*.py"):
        found |= set(re.findall(r"MIDDOCK_[A-Z_]*[A-Z]", path.read_text()))
    assert found - known == set(), "add these to middock_receiver/settings.py"
    assert set(settings.PROVIDED) | set(settings.INTERNAL) <= found


def test_apps_set_and_edge_set_keep_their_keys_order_and_defaults() -> None:
    """`apps:create` writes these, `apps:set` lists them in this order, the edge starts with these."""
    assert apps.DEFAULT_SETTINGS == {
        "branch": "main",
        "gate": "off",
        "keep": 5,
        "port": None,
        "target": "compose",
        "previews": "off",
        "preview-domain": None,
        "preview-max": 5,
        "preview-ttl": None,
    }
    assert list(apps.DEFAULT_SETTINGS) == list(settings.APP_SETTINGS)
    assert {"port", "preview-domain", "preview-ttl"} == apps.OPTIONAL_SETTINGS
    assert EdgeSettings().as_dict() == {
        "http-port": 80,
        "https-port": 443,
        "acme-email": "",
        "acme-ca": "",
        "acme-ca-root": "",
        "tls": "acme",
        "app-ports": "8000-8999",
        "slot-ports": "20000-29999",
        "dashboard": "",
        "dashboard-port": 7800,
    }
    assert list(EdgeSettings().as_dict()) == list(settings.EDGE_SETTINGS)


@pytest.mark.parametrize("value", ["8000", "9000-8000", "0-10", "1-65536", "a-b", "8000-", "-8000", "８０-９０", ""])
def test_a_port_range_is_first_last_within_1_to_65535(value: str) -> None:
    with pytest.raises(MiddockError, match="must be a range of ports FIRST-LAST"):
        settings.port_range("app-ports", value)


def test_a_port_range_is_read_as_its_ports() -> None:
    assert settings.port_range("slot-ports", "020000-20003") == "20000-20003"
    assert list(settings.ports_in("20000-20003")) == [20000, 20001, 20002, 20003]
    assert list(settings.ports_in("80-80")) == [80]


@pytest.mark.parametrize(
    ("env", "name", "expected"),
    [
        ({}, "MIDDOCK_BUILD_TIMEOUT", 1800),
        ({"MIDDOCK_HEALTH_TIMEOUT": "2.5"}, "MIDDOCK_HEALTH_TIMEOUT", 2.5),
        ({"MIDDOCK_WEB": " web:8000 "}, "MIDDOCK_WEB", ("web", 8000)),
        ({"MIDDOCK_HEALTH_PATH": "  "}, "MIDDOCK_HEALTH_PATH", "/"),
        ({"MIDDOCK_STOP_FIRST": "a b"}, "MIDDOCK_STOP_FIRST", ["a", "b"]),
    ],
)
def test_an_apps_variable_is_read_with_its_default_and_check(env: dict, name: str, expected: object) -> None:
    assert settings.env_value(env, name) == expected


@pytest.mark.parametrize("value", ["soon", "0", "-3", " "])
def test_a_timeout_that_is_not_a_positive_number_is_refused_with_one_line(value: str) -> None:
    with pytest.raises(MiddockError) as caught:
        settings.env_value({"MIDDOCK_DRAIN_TIMEOUT": value}, "MIDDOCK_DRAIN_TIMEOUT")
    assert str(caught.value).startswith("MIDDOCK_DRAIN_TIMEOUT must be a ") and repr(value) in str(caught.value)
