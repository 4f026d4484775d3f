"""`[ratelimit]` and `[[ratelimit.rules]]`, the policy table they build, what a reload changed."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from app.core.config_schema import check
from app.ratelimit.limits import check_limit, parse_limit
from app.ratelimit.policies import ANY_METHOD, EXEMPT, Policy, PolicyTable, Rule

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def _key(value: str) -> str | None:
    if value == "ip":
        return None
    name = value.removeprefix("header:")
    if value.startswith("header:") and _HEADER_NAME.fullmatch(name):
        return None
    return f'expected "ip" or "header:<Name>" (e.g. "header:X-API-Key"), got "{value}"'


def _method(value: str) -> str | None:
    if value.upper() in METHODS or value == ANY_METHOD:
        return None
    return f'expected one of {", ".join(METHODS)} or "*", got "{value}"'


def _template(value: str) -> str | None:
    if not value.startswith("/"):
        return f'expected a route template like "/api/items/{{id}}", got "{value}"'
    if value in EXEMPT:
        return f'"{value}" is never rate limited: remove this rule'
    return None


def _name(value: str) -> str | None:
    if value and not (value.isascii() and value.isprintable()):
        return f"expected printable ASCII, got {value!r}"
    if value == "default":
        return '"default" is the default policy\'s name: choose another'
    return None


@dataclass(frozen=True)
class RuleSettings:
    """One `[[ratelimit.rules]]` table: `limit` on `method` requests to the route `path`."""

    path: str = field(default="", metadata=check(_template))
    method: str = field(default=ANY_METHOD, metadata=check(_method))
    limit: str = field(default="", metadata=check(check_limit))
    # The policy name in the RateLimit headers; default "<METHOD> <path>".
    name: str = field(default="", metadata=check(_name))

    @property
    def policy_name(self) -> str:
        if self.name:
            return self.name
        return self.path if self.method == ANY_METHOD else f"{self.method.upper()} {self.path}"

    def describe(self) -> str:
        return f"{self.method.upper()} {self.path} {self.limit}"


def _rules(rules: tuple[RuleSettings, ...]) -> str | None:
    seen: set[tuple[str, str]] = set()
    names: set[str] = set()
    for index, rule in enumerate(rules):
        if not rule.path or not rule.limit:
            # Missing, or invalid and reported on its own line above.
            return f'rules[{index}]: a rule needs a valid "path" and "limit"'
        where = (rule.method.upper(), rule.path)
        if where in seen:
            return f"rules[{index}]: a second rule for {where[0]} {where[1]}: keep one"
        if rule.policy_name in names:
            return f'rules[{index}]: the name "{rule.policy_name}" is used twice'
        seen.add(where)
        names.add(rule.policy_name)
    return None


@dataclass(frozen=True)
class RatelimitSettings:
    """`[ratelimit]`."""

    default: str = field(default="100/second", metadata=check(check_limit))
    key: str = field(default="ip", metadata=check(_key))
    fail_open: bool = True
    rules: tuple[RuleSettings, ...] = field(default=(), metadata=check(_rules))


def build_table(settings: RatelimitSettings) -> PolicyTable:
    rules = [
        Rule(r.path, r.method.upper(), Policy(r.policy_name, parse_limit(r.limit)))
        for r in settings.rules
    ]
    return PolicyTable(Policy("default", parse_limit(settings.default)), rules, settings.key)


def describe_changes(old: RatelimitSettings, new: RatelimitSettings) -> list[str]:
    """One line per change between two `[ratelimit]` sections (for the SIGHUP log)."""
    lines = []
    for key in ("default", "key", "fail_open"):
        before, after = getattr(old, key), getattr(new, key)
        if before != after:
            lines.append(f"ratelimit.{key}: {_show(before)} -> {_show(after)}")
    old_rules = {(r.method.upper(), r.path): r for r in old.rules}
    new_rules = {(r.method.upper(), r.path): r for r in new.rules}
    for where, rule in old_rules.items():
        if where not in new_rules:
            lines.append(f"ratelimit.rules: removed {rule.describe()}")
        elif new_rules[where] != rule:
            lines.append(f"ratelimit.rules: {rule.describe()} -> {new_rules[where].describe()}")
    lines.extend(
        f"ratelimit.rules: added {rule.describe()}"
        for where, rule in new_rules.items()
        if where not in old_rules
    )
    return lines


def _show(value: object) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)
