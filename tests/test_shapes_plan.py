"""Which shape a repository is and what middock makes of it, without Docker: a Dockerfile's port,
a Procfile's processes, the compose file of a Dockerfile repository, what Compose builds. The
shapes deployed for real: test_shapes.py."""

from __future__ import annotations

import shlex

import pytest

from middock_receiver.errors import MiddockError
from middock_receiver.pipeline import compose_build, shapes


@pytest.mark.parametrize(
    ("dockerfile", "port"),
    [
        ("FROM x\nEXPOSE 8080\n", 8080),
        ("FROM x\nexpose 3000/tcp 4000\n", 3000),
        ("FROM x AS build\nEXPOSE 9999\nFROM y\nEXPOSE 8000\n", 8000),
        ("FROM x AS build\nEXPOSE 9999\nFROM y\n", None),
        ("FROM x\nEXPOSE $PORT\n", None),
        ("FROM x\n", None),
    ],
)
def test_the_port_is_the_first_the_final_stage_exposes(dockerfile, port):
    assert shapes.exposed_port(dockerfile) == port


def test_a_procfile_is_its_process_types_in_order():
    text = "# processes\nweb: gunicorn app:app --bind 0.0.0.0:$PORT\n\nworker: python worker.py\nrelease: ./migrate\n"
    assert shapes.parse_procfile(text) == {
        "web": "gunicorn app:app --bind 0.0.0.0:$PORT",
        "worker": "python worker.py",
        "release": "./migrate",
    }


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("web gunicorn\n", "line 1: expected `TYPE: COMMAND`"),
        ("web:\n", "line 1: expected `TYPE: COMMAND`"),
        ("Web Server: x\n", "line 1: 'Web Server' is not a process type"),
        ("../x: y\n", "is not a process type"),
        ("web: a\nweb: b\n", "line 2: process type web is given twice"),
        ("release: ./migrate\n", "names no process to run"),
        ("", "names no process to run"),
    ],
)
def test_a_bad_procfile_is_one_line(text, says):
    with pytest.raises(MiddockError, match=says.replace("(", r"\(").replace("`", "`")):
        shapes.parse_procfile(text)


def test_a_lone_dockerfile_is_one_web_service_with_its_port(tmp_path):
    (tmp_path / "Dockerfile").write_text("FROM x\nEXPOSE 8080\n")
    app = shapes.dockerfile_app(tmp_path, {})
    assert app == shapes.DockerfileApp("Dockerfile", 8080) and app.shape == "Dockerfile"
    config = shapes.compose_config(app, "shop", ["SECRET", "API_KEY"])
    assert config == {
        "services": {
            "web": {
                "image": "shop-web",
                "environment": ["API_KEY", "SECRET", "PORT=8080"],
                "build": {"context": ".", "dockerfile": "Dockerfile"},
            }
        }
    }
    assert shapes.implied_env(tmp_path, {}) == {"MIDDOCK_WEB": "web:8080"}
    assert shapes.implied_env(tmp_path, {"MIDDOCK_WEB": "web:9000"}) == {}
    assert shapes.dockerfile_app(tmp_path, {"MIDDOCK_WEB": "web:9000"}).port == 9000
    (tmp_path / "Dockerfile").write_text("FROM x\n")
    assert shapes.dockerfile_app(tmp_path, {}).port == shapes.DEFAULT_PORT


def test_a_dockerfile_apps_containers_get_middock_env_and_the_config_vars_but_settings():
    defaults = {"GREETING": "hi", "MIDDOCK_WEB": "web:80", "COMPOSE_FILE": "x.yaml", "PATH": "/x"}
    assert shapes.container_names(defaults, {"SECRET": "s", "GREETING": "hello"}) == ["GREETING", "SECRET"]


def test_a_procfile_makes_a_service_a_process_of_one_image_and_release_the_release_command(tmp_path):
    (tmp_path / "Dockerfile").write_text("FROM x\n")
    (tmp_path / "Procfile").write_text("web: serve --port $PORT\nworker: work\nrelease: migrate --yes\n")
    app = shapes.dockerfile_app(tmp_path, {})
    assert app.shape == "Dockerfile + Procfile"
    services = shapes.compose_config(app, "shop", [])["services"]
    assert list(services) == ["web", "worker"]
    assert services["web"]["build"] and "build" not in services["worker"]
    assert services["web"]["image"] == services["worker"]["image"] == "shop-web"
    assert services["worker"]["command"] == ["/bin/sh", "-c", "work"]
    assert services["web"]["command"] == ["/bin/sh", "-c", "serve --port $$PORT"]  # for the shell, not Compose
    assert services["web"]["init"] and "TINI_KILL_PROCESS_GROUP=1" in services["web"]["environment"]
    implied = shapes.implied_env(tmp_path, {})
    assert implied["MIDDOCK_WEB"] == "web:5000"
    assert shlex.split(implied["MIDDOCK_RELEASE_COMMAND"]) == ["web", "/bin/sh", "-c", "migrate --yes"]


def test_a_compose_file_decides_over_a_dockerfile(tmp_path):
    (tmp_path / "Dockerfile").write_text("FROM x\nEXPOSE 8080\n")
    (tmp_path / "compose.yaml").write_text("services: {}\n")
    assert shapes.implied_env(tmp_path, {}) == {}
    line = shapes.compose_shape(scripts=False, builds=True, dockerfile=True)
    assert line == "compose build; the compose file decides: a Dockerfile counts only through build:"
    assert shapes.compose_shape(scripts=True, builds=True, dockerfile=False) == "build scripts + compose build"


def test_middock_dockerfile_names_another_inside_the_repository(tmp_path):
    (tmp_path / "deploy").mkdir()
    (tmp_path / "deploy" / "web.Dockerfile").write_text("FROM x\n")
    assert shapes.dockerfile_of(tmp_path, {"MIDDOCK_DOCKERFILE": "deploy/web.Dockerfile"}) == "deploy/web.Dockerfile"
    with pytest.raises(MiddockError, match="is outside the repository"):
        shapes.dockerfile_of(tmp_path, {"MIDDOCK_DOCKERFILE": "../etc/Dockerfile"})
    with pytest.raises(MiddockError, match="is not a file of the repository"):
        shapes.dockerfile_of(tmp_path, {"MIDDOCK_DOCKERFILE": "missing"})
    assert shapes.dockerfile_of(tmp_path, {}) is None


def test_compose_builds_what_no_script_made_once_per_build(tmp_path):
    resolved = {
        "services": {
            "api": {"build": {"context": str(tmp_path / "api")}},
            "worker": {"build": {"context": str(tmp_path / "api")}},
            "front": {"build": {"context": str(tmp_path)}, "image": "front:v1"},
            "db": {"image": "postgres"},
        }
    }
    compose_build.name_images(resolved, "shop")
    assert resolved["services"]["api"]["image"] == "shop-api" and resolved["services"]["front"]["image"] == "front:v1"
    assert compose_build.planned(resolved, set()) == {"api": ["worker"], "front": []}
    assert compose_build.planned(resolved, {"front:v1"}) == {"api": ["worker"]}  # a build script made it


@pytest.mark.parametrize("context", ["/etc", "../outside", "https://github.com/x/y.git"])
def test_a_build_context_outside_the_repository_is_refused(tmp_path, context):
    resolved = {"services": {"api": {"build": {"context": context}}}}
    with pytest.raises(MiddockError, match="build context .* is outside the repository"):
        compose_build.check_contexts(resolved, tmp_path)
    compose_build.check_contexts({"services": {"api": {"build": {"context": str(tmp_path / "api")}}}}, tmp_path)


@pytest.mark.parametrize(
    ("ref", "parts"),
    [("shop-web", ("shop-web", "latest")), ("web:v1", ("web", "v1")), ("reg:5000/web", ("reg:5000/web", "latest"))],
)
def test_a_ref_splits_into_repository_and_tag(ref, parts):
    assert compose_build.tag_parts(ref) == parts
