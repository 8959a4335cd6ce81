"""What an SSH key may ask middock for: its role (read, deploy, admin) and, for read and deploy,
the apps it holds.

The table is plain data: for every command, the least role that may run it and whether it
changes something (what the audit log records). `refusal` decides, from nothing but its
arguments, whether a key's request goes ahead. A key's role and apps are written in its line of
the keys file (keys.py), beside its name: root's file, which the deploy user may read and never
write (account.py), so no key can change who holds which role.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

READ, DEPLOY, ADMIN = "read", "deploy", "admin"
ROLES = (READ, DEPLOY, ADMIN)  # each may do what the ones before it may
ANY = "any"  # a command every key may run: it shows only what is middock's, never an app's
GIT_FETCH, GIT_PUSH = "git fetch", "git push"  # git's pack programs, as a refusal names them


@dataclass(frozen=True)
class Rule:
    """The least role of a command; `changes`: it alters something (an audit line records it)."""

    role: str
    changes: bool = False


def _rules(role: str, changes: bool, names: str) -> dict[str, Rule]:
    return dict.fromkeys(names.split(), Rule(role, changes))


RULES: dict[str, Rule] = {
    **_rules(ANY, False, "help version"),
    GIT_FETCH: Rule(READ),
    GIT_PUSH: Rule(DEPLOY, changes=True),
    **_rules(READ, False, "apps status releases releases:output logs ps cron cron:runs"),
    **_rules(READ, False, "previews notify domains config dashboard"),
    **_rules(DEPLOY, True, "deploy rollback config:set config:unset ps:restart ps:stop ps:start"),
    **_rules(DEPLOY, True, "ps:scale run cron:run cron:suspend cron:resume maintenance:on maintenance:off"),
    **_rules(DEPLOY, True, "lock unlock previews:destroy notify:test"),
    **_rules(ADMIN, False, "audit keys:list cron:output maintenance edge networks nodes nodes:join-script ssh-serve"),
    **_rules(ADMIN, True, "apps:create apps:destroy apps:set domains:add domains:remove notify:add"),
    **_rules(ADMIN, True, "notify:remove notify:rotate-secret previews:expire keys:add keys:set keys:remove"),
    **_rules(ADMIN, True, "edge:set edge:start edge:stop swarm:init nodes:activate nodes:drain nodes:remove"),
    **_rules(ADMIN, True, "refresh dashboard:logout-all dashboard:install"),
    "dashboard:serve": Rule(ADMIN),
}
REVEAL = Rule(DEPLOY)  # `config --reveal`: the values themselves


@dataclass(frozen=True)
class Grant:
    """What one key holds: its role and, for read and deploy, its apps (empty: every app)."""

    key: str
    role: str = ADMIN
    apps: tuple[str, ...] = ()

    def holds(self, app: str) -> bool:
        return self.role == ADMIN or not self.apps or app in self.apps

    def describe(self) -> str:
        return f"{self.role} on {', '.join(self.apps)}" if self.apps and self.role != ADMIN else self.role


def rule(command: str, reveal: bool = False) -> Rule:
    """The rule of a command; an unknown one is admin's, so a command new to middock is never
    let through by mistake."""
    return REVEAL if command == "config" and reveal else RULES.get(command, Rule(ADMIN, True))


def may(role: str, needed: str) -> bool:
    return needed == ANY or ROLES.index(role) >= ROLES.index(needed)


def refusal(grant: Grant, command: str, apps: Sequence[str] = (), reveal: bool = False) -> str | None:
    """None when `grant` may run `command` on an app named in `apps` (the app, and for a preview
    its parent: holding either is enough); else the one line saying why not."""
    needed = rule(command, reveal).role
    what = f"{command} --reveal" if command == "config" and reveal else command
    if not may(grant.role, needed):
        return f"refused: key {grant.key} has role {grant.describe()}; {what} needs {needed}"
    if apps and not any(grant.holds(app) for app in apps):
        return f"refused: key {grant.key} has role {grant.describe()}; {what} on {apps[0]} needs that app"
    return None


def changes(command: str) -> bool:
    return rule(command).changes
