"""Preview apps' pure rules: the name a branch gets, and the settings that turn them on."""

from __future__ import annotations

import pytest

from middock_receiver.errors import MiddockError
from middock_receiver.state import apps, previews
from middock_receiver.state.apps import APP_NAME, App


@pytest.mark.parametrize(
    ("branch", "slug"),
    [
        ("Feature/X", "feature-x"),
        ("fix--double__under", "fix-double-under"),
        ("-/release/1.2/", "release-1-2"),
        ("ÄÖÜ", "branch"),
        ("UPPER", "upper"),
    ],
)
def test_a_branch_becomes_lowercase_letters_digits_and_single_dashes(branch, slug):
    assert previews.slug(branch) == slug


def test_a_preview_is_named_app_dash_dash_branch_and_cut_to_fit_with_a_hash():
    assert previews.name_for("shop", "Feature/X", {}) == "shop--feature-x"
    long = previews.name_for("shop", "a-" * 60, {})
    assert len(long) <= 63 and APP_NAME.match(long) and long.startswith("shop--a-a-")
    assert long != previews.name_for("shop", "a-" * 61, {})  # two long branches, two names
    assert long == previews.name_for("shop", "a-" * 60, {long: "a-" * 60})  # its own name again


def test_two_branches_with_one_slug_get_two_names():
    first = previews.name_for("shop", "Feature/X", {})
    second = previews.name_for("shop", "feature-x", {first: "Feature/X"})
    assert second != first and second.startswith("shop--feature-x-") and APP_NAME.match(second)


def test_an_app_name_too_long_for_previews_is_refused():
    with pytest.raises(MiddockError, match="too long a name for previews"):
        previews.name_for("a" * 56, "x", {})


def test_a_preview_deploys_from_its_parents_repository(tmp_path):
    preview, parent = App("shop--feature-x", tmp_path), App("shop", tmp_path)
    assert preview.parent == "shop" and parent.parent is None
    assert preview.repo == parent.repo == tmp_path / "shop.git"
    assert previews.domain_label(preview) == "feature-x"


@pytest.mark.parametrize(
    ("key", "value", "stored"),
    [
        ("previews", "on", "on"),
        ("preview-domain", "Preview.Example.org.", "preview.example.org"),
        ("preview-max", "3", 3),
        ("preview-ttl", "7", 7),
    ],
)
def test_preview_settings_are_checked_and_typed(key, value, stored):
    assert apps.parse_setting(key, value) == stored


@pytest.mark.parametrize(
    ("key", "value"),
    [("previews", "yes"), ("preview-domain", "localhost"), ("preview-max", "0"), ("preview-ttl", "1.5")],
)
def test_bad_preview_settings_are_one_clear_error(key, value):
    with pytest.raises(MiddockError, match=key.split("-")[-1] if key != "preview-domain" else "invalid domain"):
        apps.parse_setting(key, value)
