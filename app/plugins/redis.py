"""The `redis` plugin: one shared Redis client per instance, and the instance heartbeat.

With `[redis] url = ""` (the default) there is no client and the plugin does
nothing: the cache, limits and WebSocket bus stay in-process. With a URL every
Redis-backed plugin shares `app[REDIS]` (`app.redis.RedisService`), with short
timeouts so a slow Redis costs latency, not stuck requests. Calls go through
the `redis` breaker when the breakers plugin is enabled (set up first, as an
optional dependency), else through a minimal open/closed guard. While it runs,
the application's broadcast (operator actions) reaches every instance through
Redis pub/sub (`app.redis.broadcast`).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from app.breakers import BREAKERS
from app.core.broadcast import BROADCAST
from app.core.guard import Guard, MinimalGuard
from app.core.lifecycle import LIFECYCLE
from app.core.periodic import periodic
from app.metrics import METRICS
from app.plugins import READY, BasePlugin, Readiness, SettingsOf
from app.redis import REDIS, REDIS_ERRORS, RedisService, RedisSettings
from app.redis.broadcast import RedisBroadcast
from app.redis.metrics import BatchCollector


class RedisPlugin(BasePlugin):
    name = "redis"
    optional = ("metrics", "breakers")
    settings = SettingsOf(RedisSettings)

    def setup(self, app: web.Application) -> None:
        breakers = app.get(BREAKERS)
        guard: Guard = (
            breakers.get("redis")
            if breakers is not None
            else MinimalGuard("redis", open_seconds=self.settings.retry_after)
        )
        self.service = app[REDIS] = RedisService(self.settings, guard)
        metrics = app.get(METRICS)
        if metrics is not None and self.service.enabled:
            metrics.registry.register(BatchCollector(self.service))

    @contextlib.asynccontextmanager
    async def lifespan(self, app: web.Application) -> AsyncIterator[None]:
        service = self.service
        if not service.enabled:
            yield
            return
        instance = app[LIFECYCLE].instance
        service.open()
        await service.beat_guarded(instance)  # an outage at startup degrades; it does not stop us
        try:
            async with (
                periodic(
                    "keel.redis.heartbeat",
                    lambda: service.settings.heartbeat_interval,
                    lambda: service.beat_guarded(instance),
                ),
                # Operator actions (breakers') now reach every instance.
                app[BROADCAST].attached(RedisBroadcast(service)),
            ):
                yield
        finally:
            with contextlib.suppress(*REDIS_ERRORS):
                await service.leave(instance)
            await service.close()

    async def readiness(self) -> Readiness:
        if not self.service.enabled:
            return READY
        try:
            await self.service.ping()
        except REDIS_ERRORS as exc:
            # Every Redis user has an in-process fallback: degraded, still serving.
            return Readiness("degraded", f"redis unreachable: {exc}")
        return READY

    def state(self) -> dict[str, Any]:
        s = self.service
        return {
            "url": s.settings.url.redacted,
            "enabled": s.enabled,
            "live_instances": s.live_instances,
            "last_error": s.last_error,
            "outage_since": s.outage.since,
            "last_ok": s.last_ok,
            "breaker": s.guard.state,
            "commands": s.batch.commands if s.batch else 0,
            "pipelines": s.batch.batches if s.batch else 0,
        }
