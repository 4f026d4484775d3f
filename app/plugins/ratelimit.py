"""The `ratelimit` plugin: `[ratelimit]` limits on API routes, shared exactly through Redis.

A middleware decides each limited request with one GCRA step (`app.ratelimit`):
in Redis when `[redis] url` is set (every instance shares one budget per
client), in-process otherwise. Responses of limited routes carry the
RateLimit headers (`app.ratelimit.headers`), error responses included; a
refused request gets 429 `rate_limited` with `Retry-After`. While Redis is
unreachable see `app.ratelimit.limiter` for the degraded behaviour.
SIGHUP reloads `default`, `key`, `fail_open` and `rules`.
"""

from __future__ import annotations

import contextlib
import copy
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import CollectorRegistry
from redis.exceptions import RedisError

from app.cache.cache import CACHE, Cache
from app.cache.read_ahead import READ_AHEAD, ReadAhead, cache_key_of
from app.config import Config
from app.core.config_schema import check
from app.core.openapi import error_response
from app.errors import RateLimited, Unavailable
from app.plugins import BasePlugin, Readiness
from app.plugins.metrics import METRICS
from app.plugins.redis import REDIS
from app.ratelimit.algorithm import Decision
from app.ratelimit.headers import PolicyHeaders
from app.ratelimit.limiter import DecisionCounters, RateLimiter
from app.ratelimit.limits import check_limit, parse_limit
from app.ratelimit.policies import ANY_METHOD, EXEMPT, Policy, PolicyTable, Rule
from app.ratelimit.redis_limiter import RedisLimiter

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


DECIDED = web.RequestKey("keel.ratelimit.decided", tuple[PolicyHeaders, Decision])
RATELIMITER = web.AppKey("keel.ratelimiter", RateLimiter)


async def add_ratelimit_headers(request: web.Request, response: web.StreamResponse) -> None:
    """`on_response_prepare`: every response of a limited request, errors included."""
    decided = request.get(DECIDED)
    if decided is not None:
        decided[0].apply(response.headers, decided[1])


class RatelimitPlugin(BasePlugin):
    name = "ratelimit"
    optional = ("metrics", "redis")
    settings = RatelimitSettings

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        self.options = config.section(RatelimitSettings)
        self.table = build_table(self.options)
        self.cache: Cache | None = None

    def setup(self, app: web.Application) -> None:
        metrics = app.get(METRICS)
        registry = metrics.registry if metrics is not None else CollectorRegistry()
        redis = app.get(REDIS)
        self.limiter = RateLimiter(
            DecisionCounters(registry),
            redis=redis if redis is not None and redis.enabled else None,
            fail_open=self.options.fail_open,
        )
        app[RATELIMITER] = self.limiter
        app.middlewares.append(self.middleware)
        app.on_response_prepare.append(add_ratelimit_headers)

    @contextlib.asynccontextmanager
    async def lifespan(self, app: web.Application) -> AsyncIterator[None]:
        self.cache = app.get(CACHE)  # set up by now, if enabled: its lookups can ride along
        service = self.limiter.redis
        if service is not None:
            # The redis plugin's lifespan ran first (dependency order): the client exists.
            assert service.batch is not None
            self.limiter.remote = RedisLimiter(service.batch)
            await self._load_script()
        try:
            yield
        finally:
            remote, self.limiter.remote = self.limiter.remote, None
            if remote is not None:
                await remote.close()

    async def _load_script(self) -> None:
        assert self.limiter.remote is not None
        with contextlib.suppress(RedisError, OSError, TimeoutError):
            # Unreachable now: the first EVALSHA will find NOSCRIPT and load it then.
            await self.limiter.remote.load()

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        table = self.table
        policy = table.policy_for(request)
        if policy is None:
            return await handler(request)
        ahead = self._read_ahead(request)
        decision = await self.limiter.decide(policy, table.client_key(request), ahead)
        if ahead is not None and ahead.answered:
            request[READ_AHEAD] = ahead
        if decision is None:
            raise Unavailable(
                "Rate limits cannot be checked right now; try again later.",
                retry_after=self.limiter.retry_after(),
            )
        request[DECIDED] = (policy.headers, decision)
        if not decision.allowed:
            raise RateLimited(
                f"Rate limit exceeded: {policy.limit} ({policy.name}).",
                retry_after=decision.reset_us / 1e6,
                details={"policy": policy.name, "limit": str(policy.limit)},
            )
        return await handler(request)

    def _read_ahead(self, request: web.Request) -> ReadAhead | None:
        """The cache lookup the handler declared, to send with the limit step (one command)."""
        cache = self.cache
        if cache is None or self.limiter.remote is None:
            return None
        key = cache_key_of(request)
        return cache.read_ahead(key) if key is not None else None

    async def readiness(self) -> Readiness:
        limiter = self.limiter
        if limiter.degraded:
            await limiter.probe()
        if not limiter.degraded:
            return Readiness("ok", f"backend: {limiter.backend}")
        if not limiter.fail_open:
            return Readiness("down", f"redis unavailable ({limiter.outage_reason}): answering 503")
        live = limiter.redis.live_instances if limiter.redis is not None else 1
        return Readiness(
            "degraded",
            f"redis unavailable ({limiter.outage_reason}): limiting in-process at each"
            f" limit / {live} live instance(s)",
        )

    def state(self) -> dict[str, Any]:
        limiter = self.limiter
        return {
            "backend": limiter.backend,
            "degraded": limiter.degraded,
            "outage_since": limiter.outage_since,
            "outage_reason": limiter.outage_reason,
            "fail_open": limiter.fail_open,
            "key": self.options.key,
            "default": str(self.table.default.limit),
            "rules": [
                {"path": r.path, "method": r.method, "limit": r.limit, "name": r.policy_name}
                for r in self.options.rules
            ],
            "recent_limited": list(limiter.recent_limited),
        }

    def reload(self, config: Config) -> list[str]:
        self.config = config
        new = config.section(RatelimitSettings)
        changes = describe_changes(self.options, new)
        if changes:
            # One assignment swaps default, rules, key and the route cache together.
            self.table = build_table(new)
            self.limiter.fail_open = new.fail_open
            self.options = new
        return changes

    def openapi_amend(self, document: dict[str, Any]) -> None:
        """Add 429 (and 503 when failing closed) to every operation this plugin limits."""
        # The paths are other modules' constants: amend a copy, never them.
        document["paths"] = paths = copy.deepcopy(document["paths"])
        for template, item in paths.items():
            for method, operation in item.items():
                if not isinstance(operation, dict) or "responses" not in operation:
                    continue
                if self.table.match(template, method.upper()) is None:
                    continue
                responses = operation["responses"]
                responses.setdefault("429", error_response("Rate limited (`Retry-After`)"))
                if not self.options.fail_open:
                    responses.setdefault(
                        "503", error_response("Rate limits cannot be checked (Redis down)")
                    )
