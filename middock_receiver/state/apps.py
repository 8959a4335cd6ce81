"""Where an app lives on disk, its name rules and its per-app settings."""

from __future__ import annotations

import json
import os
import pwd
import re
import shlex
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from ..errors import MiddockError, quoted
from ..settings import APP_SETTINGS
from . import records

APP_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,62}\Z")
PREVIEW_MARK = "--"  # APP--BRANCH is a preview app of APP (previews/); no app is created with it
PREVIEW_RECORD = "preview.json"  # in a preview's state folder: what makes it one (state/previews.py)
HOOKS = ("pre-receive", "post-receive")  # the bare repo's, from the files in hooks/
DEFAULT_SETTINGS = {key: setting.default for key, setting in APP_SETTINGS.items()}  # `apps:set`, in order
OPTIONAL_SETTINGS = frozenset(key for key, value in DEFAULT_SETTINGS.items() if value is None)  # None: not set


def middock_home() -> Path:
    """`MIDDOCK_HOME`, else the home of the user running middock (the deploy user)."""
    home = os.environ.get("MIDDOCK_HOME")
    if home:
        return Path(home)
    return Path(pwd.getpwuid(os.getuid()).pw_dir)


def check_name(name: str) -> str:
    """An existing app's name (an older middock also made names ending in '-'; they stay usable)."""
    if not APP_NAME.match(name):
        raise MiddockError(
            f"invalid app name {quoted(name)}: use lowercase letters, digits and '-', "
            "starting with a letter or digit, at most 63 characters"
        )
    return name


def check_new_name(name: str) -> str:
    """A name `apps:create` gives: no '--' (kept for previews, APP--BRANCH) and no '-' at its end,
    so that no preview name (APP---BRANCH) reads as a preview of another app."""
    check_name(name)
    if PREVIEW_MARK in name:
        raise MiddockError(f"invalid app name {name!r}: '{PREVIEW_MARK}' is kept for preview apps (APP--BRANCH)")
    if name.endswith("-"):
        raise MiddockError(f"invalid app name {name!r}: it cannot end with '-'")
    return name


@dataclass(frozen=True)
class App:
    """An app: its bare repo `HOME/NAME.git` and its state folder `HOME/.middock/NAME`."""

    name: str
    home: Path

    @classmethod
    def named(cls, name: str, home: Path | None = None) -> App:
        return cls(check_name(name), home or middock_home())

    @property
    def parent(self) -> str | None:
        """The app this one previews a branch of, as its record says; None for any other app."""
        return recorded_parent(self)

    @property
    def repo(self) -> Path:
        """The bare repo pushed to; a preview has none of its own and deploys from its parent's."""
        return self.home / f"{self.parent or self.name}.git"

    @property
    def state(self) -> Path:
        return self.home / ".middock" / self.name

    @property
    def releases_dir(self) -> Path:
        return self.state / "releases"

    @property
    def settings_file(self) -> Path:
        return self.state / "settings.json"

    @property
    def config_file(self) -> Path:
        return self.state / "config.env"

    def exists(self) -> bool:
        return self.repo.is_dir() and self.state.is_dir()

    def require(self) -> App:
        if not self.exists():
            raise MiddockError(f"app {self.name!r} does not exist; create it with: apps:create {self.name}")
        return self


def all_apps(home: Path | None = None) -> list[App]:
    root = (home or middock_home()) / ".middock"
    if not root.is_dir():
        return []
    apps = [App(p.name, root.parent) for p in sorted(root.iterdir()) if APP_NAME.match(p.name)]
    return [app for app in apps if listed(app)]


def listed(app: App) -> bool:
    """Whether `all_apps` lists the app: it exists, or it is a preview whose record is not valid
    (listed, so that only what reads that record fails, naming the file, and never the others)."""
    try:
        return app.exists()
    except MiddockError:
        return True


def recorded_parent(app: App) -> str | None:
    """The parent named by the app's preview record (state/previews.py reads the rest), checked:
    an app's name that, with the mark, begins the preview's name. None when there is no record
    (only an APP--BRANCH name can have one)."""
    if PREVIEW_MARK not in app.name:
        return None
    path = app.state / PREVIEW_RECORD
    stored = records.read_json(path)
    if stored is None:
        return None
    with records.checked(path):
        if not isinstance(stored, dict):
            raise ValueError("not a JSON object")
        parent = stored.get("parent")
        if not isinstance(parent, str) or not APP_NAME.match(parent) or PREVIEW_MARK in parent:
            raise ValueError(f"parent {parent!r:.60} is not an app's name")
        if not app.name.startswith(f"{parent}{PREVIEW_MARK}"):
            raise ValueError(f"{app.name} cannot be a preview of {parent}")
    return parent


def write_atomic(path: Path, text: str | bytes, mode: int = 0o644) -> None:
    """Write a whole file so readers never see half of it, even after a crash (text as UTF-8,
    bytes as they are)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(text.encode() if isinstance(text, str) else text)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def read_settings(app: App) -> dict:
    """The app's settings, each checked as `apps:set` checks it (whoever wrote the file)."""
    settings = dict(DEFAULT_SETTINGS)
    if not app.settings_file.exists():
        return settings
    try:
        stored = json.loads(app.settings_file.read_text())
        for key, value in stored.items():
            if key in DEFAULT_SETTINGS:
                settings[key] = None if value is None and key in OPTIONAL_SETTINGS else parse_setting(key, str(value))
    except (ValueError, AttributeError, MiddockError) as error:
        raise MiddockError(f"{app.settings_file} is not a valid record: {error}; fix or remove it") from None
    return settings


def parse_setting(key: str, value: str) -> str | int:
    """Validate one `apps:set` value (its check in the settings' table); returns it in its stored type."""
    setting = APP_SETTINGS.get(key)
    if setting is None:
        raise MiddockError(f"unknown setting {key!r}; settings are: {', '.join(DEFAULT_SETTINGS)}")
    return setting.check(key, value)


def write_setting(app: App, key: str, value: str) -> dict:
    """Save one setting; `off` unsets an optional one (preview-domain, preview-ttl)."""
    settings = read_settings(app)
    settings[key] = None if key in OPTIONAL_SETTINGS - {"port"} and value == "off" else parse_setting(key, value)
    write_atomic(app.settings_file, json.dumps(settings, indent=2) + "\n")
    return settings


def create(app: App, python: str) -> None:
    """Make the bare repo with its hooks and the state folder."""
    from dulwich.repo import Repo  # dulwich only where a repo is made or changed: every command imports this module

    check_new_name(app.name)
    if app.exists():
        raise MiddockError(f"app {app.name!r} already exists")
    app.releases_dir.mkdir(parents=True, exist_ok=True)
    if not app.repo.exists():
        Repo.init_bare(str(app.repo), mkdir=True)
    point_head(app, DEFAULT_SETTINGS["branch"])
    install_hooks(app, python)
    if not app.settings_file.exists():
        write_atomic(app.settings_file, json.dumps(DEFAULT_SETTINGS, indent=2) + "\n")


def point_head(app: App, branch: str) -> None:
    """Make the bare repo's HEAD the deploy branch, so `git clone` checks it out, while still
    letting a push delete that branch (it deploys nothing and stops nothing)."""
    from dulwich.repo import Repo

    repo = Repo(str(app.repo))
    repo.refs.set_symbolic_ref(b"HEAD", f"refs/heads/{branch}".encode())
    config = repo.get_config()
    config.set((b"receive",), b"denyDeleteCurrent", b"ignore")
    config.write_to_path()


def hook_source(name: str) -> Path:
    """The hook file shipped in `hooks/`: the source tree's, else the installed copy."""
    for folder in (Path(__file__).resolve().parents[2] / "hooks", Path(sys.prefix) / "share" / "middock" / "hooks"):
        if (folder / name).is_file():
            return folder / name
    raise MiddockError(f"middock's {name} hook file is missing from this installation")


def install_hooks(app: App, python: str) -> None:
    """Put both hooks into the bare repo, pointed at this interpreter so they work from a minimal
    environment: pre-receive checks a push before git takes it (and deploys it in gate mode),
    post-receive deploys it after (see push/hook.py)."""
    hooks = app.repo / "hooks"
    hooks.mkdir(exist_ok=True)
    for name in HOOKS:
        text = hook_source(name).read_text()
        text = re.sub(r"^MIDDOCK_PYTHON=.*$", f"MIDDOCK_PYTHON={shlex.quote(python)}", text, count=1, flags=re.M)
        write_atomic(hooks / name, text, 0o755)


def destroy(app: App) -> None:
    """Remove the app's state and its repo (a preview's repo is its parent's: kept)."""
    if app.parent is None:
        shutil.rmtree(app.repo, ignore_errors=True)
    shutil.rmtree(app.state, ignore_errors=True)
