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
    preview.state.mkdir(parents=True)
    previews.save(preview, previews.Preview("shop", "Feature/X"))
    assert preview.parent == "shop" and parent.parent is None
    assert preview.repo == parent.repo == tmp_path / "shop.git"
    assert previews.domain_label("shop", preview.name) == "feature-x"


def test_a_previews_parent_is_its_records_never_a_cut_of_its_name(tmp_path):
    """`shop-` (a name an older middock gave) has the preview `shop---feature`: its parent is
    `shop-`, not `shop`; a name with `--` but no record is no preview."""
    preview = App(previews.name_for("shop-", "feature", {}), tmp_path)
    assert preview.name == "shop---feature" and preview.parent is None
    preview.state.mkdir(parents=True)
    previews.save(preview, previews.Preview("shop-", "feature"))
    assert preview.parent == "shop-" and preview.repo == tmp_path / "shop-.git"
    assert previews.domain_label("shop-", preview.name) == "feature"


@pytest.mark.parametrize(
    "record",
    [
        '{"parent": "other", "branch": "x"}',  # not the start of the preview's name
        '{"parent": "shop--a", "branch": "x"}',
        '{"parent": "../shop", "branch": "x"}',
        '{"parent": "shop", "branch": "x\\nrefs/heads/y"}',
        '{"parent": "shop", "branch": "x", "created": "yesterday"}',
        '["shop"]',
        "{",
    ],
)
def test_a_bad_preview_record_is_one_error_naming_it(tmp_path, record):
    preview = App("shop--x", tmp_path)
    preview.state.mkdir(parents=True)
    previews.record_path(preview).write_text(record)
    with pytest.raises(MiddockError, match=f"{previews.record_path(preview)} is not a valid record"):
        previews.load(preview)


def test_a_bad_preview_record_fails_only_what_reads_it(tmp_path):
    """Every app is still listed (the edge goes on serving the others); the parent's previews are
    one error naming the file; another app's are not touched."""
    for name in ("other", "shop"):
        (tmp_path / f"{name}.git").mkdir()
        App(name, tmp_path).state.mkdir(parents=True)
    bad = App("shop--x", tmp_path)
    bad.state.mkdir()
    previews.record_path(bad).write_text("{")
    assert [app.name for app in apps.all_apps(tmp_path)] == ["other", "shop", "shop--x"]
    assert previews.of_parent(App("other", tmp_path)) == {}
    with pytest.raises(MiddockError, match=f"{previews.record_path(bad)} is not a valid record"):
        previews.of_parent(App("shop", tmp_path))


def test_apps_create_refuses_a_name_ending_in_a_dash_but_such_an_existing_app_is_usable():
    for name in ("shop-", "shop--x", "-shop"):
        with pytest.raises(MiddockError, match="invalid app name"):
            apps.check_new_name(name)
    assert apps.check_name("shop-") == "shop-" and apps.check_new_name("shop-2") == "shop-2"


@pytest.mark.parametrize(
    "branch",
    ["feature/x", "fix-1.2", "Ünïcode", "a" * 255, "release@1", "x.lock.y"],
)
def test_branch_names_git_takes_are_taken(branch):
    assert apps.parse_setting("branch", branch) == branch


@pytest.mark.parametrize(
    "branch",
    [
        "",
        "x\nrefs/heads/y",
        "x\ty",
        "a b",
        "a~1",
        "a^",
        "a:b",
        "a?",
        "a*",
        "a[b",
        "a\\b",
        "a\x7f",
        "a..b",
        "a@{1}",
        "@",
        "HEAD",
        "-x",
        "/x",
        "x/",
        "a//b",
        "x.",
        "x.lock",
        "a/.hidden",
        "a/b.lock/c",
        "a" * 256,
        "\udcff",
    ],
)
def test_branch_names_git_refuses_are_one_clear_error(branch):
    with pytest.raises(MiddockError, match="invalid branch name") as refused:
        apps.parse_setting("branch", branch)
    assert "\n" not in str(refused.value) and len(str(refused.value)) < 400


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
