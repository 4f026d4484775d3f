"""The `breakers` plugin: named circuit breakers guarding every dependency.

Publishes `app[BREAKERS]` (a `BreakerRegistry`). Set up after `redis` (an
optional dependency), it replaces `app[REDIS].breaker` — the redis plugin's
minimal guard — with the registry's `redis` breaker; the sharding plugin, set
up after this one, takes `shard.<n>` from the registry, and the upstreams
plugin `upstream.<name>`. Operator actions reach every instance through Redis
pub/sub when `[redis] url` is set.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry

from app.breakers import BreakerRegistry, BreakersSettings, OperatorControl
from app.config import Config
from app.core.lifecycle import LIFECYCLE
from app.plugins import READY, BasePlugin, Readiness
from app.plugins.metrics import METRICS
from app.plugins.redis import REDIS

BREAKERS = web.AppKey("keel.breakers", BreakerRegistry)


class BreakersPlugin(BasePlugin):
    name = "breakers"
    optional = ("metrics", "redis")
    settings = BreakersSettings

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        self.options = config.section(BreakersSettings)

    def setup(self, app: web.Application) -> None:
        metrics = app.get(METRICS)
        registry = metrics.registry if metrics is not None else CollectorRegistry()
        self.registry = BreakerRegistry(self.options, registry)
        app[BREAKERS] = self.registry
        redis = app.get(REDIS)
        if redis is not None:
            redis.breaker = self.registry.get("redis")
        self.registry.control = OperatorControl(self.registry, app[LIFECYCLE].instance.id, redis)

    @contextlib.asynccontextmanager
    async def lifespan(self, app: web.Application) -> AsyncIterator[None]:
        dispatching = asyncio.create_task(self.registry.dispatch(), name="keel.breakers.events")
        try:
            async with self.registry.control.listening():
                yield
        finally:
            dispatching.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await dispatching

    async def readiness(self) -> Readiness:
        refusing = [b for b in self.registry if b.state in ("open", "forced_open")]
        if not refusing:
            return READY
        # Each plugin degrades in its own declared way; this lists who is cut off.
        return Readiness("degraded", "; ".join(f"{b.name}: {b.state}" for b in refusing))

    def state(self) -> dict[str, Any]:
        return {
            "cross_instance": self.registry.control.redis is not None,
            "breakers": self.registry.snapshot(),
        }
