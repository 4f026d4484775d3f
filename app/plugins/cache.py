"""The `cache` plugin: cache-aside reads, and a cache API for plugin authors.

Publishes `app[CACHE]` (a `Cache`). With `[redis] url` set the entries live in
Redis, shared by every instance, behind the `redis` guard (optionally with a
local tier, `local_ttl`); otherwise in an in-process LRU of `max_entries`. The
items routes (set up after this plugin) read through it and invalidate it.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from app.cache import CACHE, Cache, CacheMetrics, CacheSettings
from app.cache.backend import CacheBackend
from app.cache.memory import MemoryBackend
from app.cache.near import NearCacheBackend
from app.cache.redis_store import RedisBackend
from app.config import Config
from app.core.periodic import periodic
from app.metrics import registry_of
from app.plugins import READY, BasePlugin, Readiness, SettingsOf
from app.redis import REDIS, RedisService

HEAL_INTERVAL = 0.2  # seconds between recovery attempts while the cache is bypassed


class CachePlugin(BasePlugin):
    name = "cache"
    optional = ("metrics", "redis")
    settings = SettingsOf(CacheSettings)

    def setup(self, app: web.Application) -> None:
        redis = app.get(REDIS)
        self.redis = redis if redis is not None and redis.enabled else None
        self.near: NearCacheBackend | None = None
        self.cache = app[CACHE] = Cache(
            self._backend(self.redis),
            self.settings.times,
            CacheMetrics(registry_of(app)),
            guard=self.redis.guard if self.redis is not None else None,
            max_pending=self.settings.max_pending_invalidations,
        )

    def _backend(self, redis: RedisService | None) -> CacheBackend:
        if redis is None:
            return MemoryBackend(self.settings.max_entries)
        assert redis.batch is not None
        remote = RedisBackend(redis.batch, redis.settings.key_prefix)
        if self.settings.local_ttl <= 0:
            return remote
        self.near = NearCacheBackend(
            remote, MemoryBackend(self.settings.max_entries), self.settings.local_ttl
        )
        return self.near

    @contextlib.asynccontextmanager
    async def lifespan(self, app: web.Application) -> AsyncIterator[None]:
        if self.redis is None:
            yield
            return
        async with contextlib.AsyncExitStack() as stack:
            if self.near is not None:
                await stack.enter_async_context(self.near.listening_for_invalidations())
            # Recover without waiting for a request: replay what a partition left undelivered.
            await stack.enter_async_context(
                periodic("keel.cache.heal", lambda: HEAL_INTERVAL, self._heal)
            )
            yield

    async def _heal(self) -> None:
        if not self.cache.usable:
            await self.cache.heal()

    async def readiness(self) -> Readiness:
        if self.cache.usable:
            return READY
        pending = len(self.cache.pending)
        return Readiness(
            "degraded",
            f"cache bypassed (backend unreachable); {pending} invalidation(s) to replay",
        )

    def reload(self, config: Config) -> list[str]:
        old = self.settings
        super().reload(config)
        new = self.settings
        changes = [
            f"cache.{name}: {getattr(old, name)} -> {getattr(new, name)}"
            for name in ("ttl", "negative_ttl", "lease_seconds", "wait_seconds")
            if getattr(old, name) != getattr(new, name)
        ]
        self.cache.times = new.times
        return changes

    def state(self) -> dict[str, Any]:
        guard = self.cache.guard
        return {**self.cache.stats(), "breaker": guard.state if guard is not None else None}
