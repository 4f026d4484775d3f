"""The `cache` plugin: cache-aside reads of items, and a cache API for plugin authors.

Publishes `app[CACHE]` (a `Cache`). With `[redis] url` set the entries live in
Redis, shared by every instance, behind the `redis` guard; otherwise in an
in-process LRU of `max_entries`. When the items API is enabled, item reads go
through the cache (`Cache-Status` says how) and every committed write or
delete invalidates the item before the response is sent.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry

from app.api.items import ITEMS, item_cache_key
from app.cache.cache import CACHE, Cache, CacheMetrics, CacheTimes
from app.cache.memory import MemoryBackend
from app.cache.near import NearCacheBackend
from app.cache.redis_store import RedisBackend
from app.config import Config
from app.core.config_schema import check, not_negative, positive
from app.core.periodic import periodic
from app.items.model import ItemEvent
from app.plugins import READY, BasePlugin, Readiness
from app.plugins.metrics import METRICS
from app.plugins.redis import REDIS

log = logging.getLogger("keel.cache")

HEAL_INTERVAL = 0.2  # seconds between recovery attempts while the cache is bypassed


@dataclass(frozen=True)
class CacheSettings:
    """`[cache]`."""

    ttl: float = field(default=60.0, metadata=check(positive))
    negative_ttl: float = field(default=5.0, metadata=check(not_negative))
    max_entries: int = field(default=10_000, metadata=check(positive))
    lease_seconds: float = field(default=2.0, metadata=check(positive))
    wait_seconds: float = field(default=0.2, metadata=check(not_negative))
    max_pending_invalidations: int = field(default=10_000, metadata=check(positive))
    # With Redis: seconds an entry may also be kept in process memory (0 = no such tier).
    local_ttl: float = field(default=0.0, metadata=check(not_negative))


def _times(settings: CacheSettings) -> CacheTimes:
    return CacheTimes(
        ttl=settings.ttl,
        negative_ttl=settings.negative_ttl,
        lease_seconds=settings.lease_seconds,
        wait_seconds=settings.wait_seconds,
    )


class CachePlugin(BasePlugin):
    name = "cache"
    optional = ("metrics", "redis", "sharding")
    settings = CacheSettings

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        self.options = config.section(CacheSettings)
        self._redis_enabled = False

    def setup(self, app: web.Application) -> None:
        metrics = app.get(METRICS)
        registry = metrics.registry if metrics is not None else CollectorRegistry()
        self.cache = Cache(
            MemoryBackend(self.options.max_entries),
            _times(self.options),
            CacheMetrics(registry),
            max_pending=self.options.max_pending_invalidations,
        )
        app[CACHE] = self.cache
        redis = app.get(REDIS)
        if redis is not None and redis.enabled:
            self._redis_enabled = True
            # The guard is looked up per call: the breakers plugin may swap it in.
            self.cache._guard = lambda: redis.breaker
        if ITEMS in app:
            app[ITEMS].events.subscribe(self._invalidate_item)

    async def _invalidate_item(self, event: ItemEvent) -> None:
        # Created too: a 404 for this id may be cached.
        await self.cache.delete(item_cache_key(event.id))

    @contextlib.asynccontextmanager
    async def lifespan(self, app: web.Application) -> AsyncIterator[None]:
        if not self._redis_enabled:
            yield
            return
        redis = app[REDIS]
        assert redis.batch is not None
        remote = RedisBackend(redis.batch, redis.settings.key_prefix)
        async with contextlib.AsyncExitStack() as stack:
            if self.options.local_ttl > 0:
                near = NearCacheBackend(
                    remote, MemoryBackend(self.options.max_entries), self.options.local_ttl
                )
                await stack.enter_async_context(near.listening_for_invalidations())
                self.cache.backend = near
            else:
                self.cache.backend = remote
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
        new = config.section(CacheSettings)
        old, self.options = self.options, new
        self.config = config
        changes = [
            f"cache.{name}: {getattr(old, name)} -> {getattr(new, name)}"
            for name in ("ttl", "negative_ttl", "lease_seconds", "wait_seconds")
            if getattr(old, name) != getattr(new, name)
        ]
        self.cache.times = _times(new)
        return changes

    def state(self) -> dict[str, Any]:
        guard = self.cache._guard()
        return {**self.cache.stats(), "breaker": guard.state if guard is not None else None}
