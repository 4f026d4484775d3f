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
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from app.cache import CACHE
from app.cache.read_ahead import READ_AHEAD, ReadAhead, cache_key_of
from app.config import Config
from app.core.openapi import error_response
from app.errors import RateLimited, Unavailable
from app.metrics import registry_of
from app.plugins import BasePlugin, Readiness, SettingsOf
from app.ratelimit import RATELIMITER, RateLimiter, RatelimitSettings
from app.ratelimit.algorithm import Decision
from app.ratelimit.headers import PolicyHeaders
from app.ratelimit.limiter import DecisionCounters
from app.ratelimit.redis_limiter import RedisLimiter
from app.ratelimit.settings import build_table, describe_changes
from app.redis import REDIS, REDIS_ERRORS

DECIDED = web.RequestKey("keel.ratelimit.decided", tuple[PolicyHeaders, Decision])


async def add_ratelimit_headers(request: web.Request, response: web.StreamResponse) -> None:
    """`on_response_prepare`: every response of a limited request, errors included."""
    decided = request.get(DECIDED)
    if decided is not None:
        decided[0].apply(response.headers, decided[1])


class RatelimitPlugin(BasePlugin):
    name = "ratelimit"
    # The cache is optional: with it, a cached read's lookup rides on the limit step.
    optional = ("metrics", "redis", "cache")
    settings = SettingsOf(RatelimitSettings)

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        self.table = build_table(self.settings)

    def setup(self, app: web.Application) -> None:
        redis = app.get(REDIS)
        if redis is not None and not redis.enabled:
            redis = None
        self.cache = app.get(CACHE)
        self.limiter = app[RATELIMITER] = RateLimiter(
            DecisionCounters(registry_of(app)), redis=redis, fail_open=self.settings.fail_open
        )
        app.middlewares.append(self.middleware)
        app.on_response_prepare.append(add_ratelimit_headers)

    @contextlib.asynccontextmanager
    async def lifespan(self, app: web.Application) -> AsyncIterator[None]:
        remote = self.limiter.remote
        if remote is not None:
            await self._load_script(remote)
        try:
            yield
        finally:
            if remote is not None:
                await remote.close()

    async def _load_script(self, remote: RedisLimiter) -> None:
        with contextlib.suppress(*REDIS_ERRORS):
            # Unreachable now: the first EVALSHA will find NOSCRIPT and load it then.
            await remote.load()

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
            return Readiness("down", f"redis unavailable ({limiter.outage.reason}): answering 503")
        live = limiter.redis.live_instances if limiter.redis is not None else 1
        return Readiness(
            "degraded",
            f"redis unavailable ({limiter.outage.reason}): limiting in-process at each"
            f" limit / {live} live instance(s)",
        )

    def state(self) -> dict[str, Any]:
        limiter = self.limiter
        return {
            "backend": limiter.backend,
            "degraded": limiter.degraded,
            "outage_since": limiter.outage.since,
            "outage_reason": limiter.outage.reason,
            "fail_open": limiter.fail_open,
            "key": self.settings.key,
            "default": str(self.table.default.limit),
            "rules": [
                {"path": r.path, "method": r.method, "limit": r.limit, "name": r.policy_name}
                for r in self.settings.rules
            ],
            "recent_limited": list(limiter.recent_limited),
            "decisions": {
                "allowed": int(limiter.counters.allowed.value),
                "limited": int(limiter.counters.limited.value),
                "degraded": int(limiter.counters.degraded.value),
            },
        }

    def reload(self, config: Config) -> list[str]:
        old = self.settings
        super().reload(config)
        changes = describe_changes(old, self.settings)
        if changes:
            # One assignment swaps default, rules, key and the route cache together.
            self.table = build_table(self.settings)
            self.limiter.fail_open = self.settings.fail_open
        return changes

    def amend_openapi(self, document: dict[str, Any]) -> None:
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
                if not self.settings.fail_open:
                    responses.setdefault(
                        "503", error_response("Rate limits cannot be checked (Redis down)")
                    )
