"""The `breakers` plugin: named circuit breakers guarding every dependency.

Publishes `app[BREAKERS]` (a `BreakerRegistry`) and is set up before the
plugins whose dependencies it guards: the redis plugin takes the `redis`
breaker, sharding `shard.<n>`, the queue `amqp`, upstreams `upstream.<name>`.
Operator actions (`reset`, `force_open`, `disable`) go through the
application's broadcast, which reaches every instance while the redis plugin
has Redis attached to it.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from app.breakers import BREAKERS, BreakerRegistry, BreakersSettings
from app.core.background import background
from app.core.broadcast import BROADCAST
from app.metrics import registry_of
from app.plugins import READY, BasePlugin, Readiness, SettingsOf


class BreakersPlugin(BasePlugin):
    name = "breakers"
    optional = ("metrics",)
    settings = SettingsOf(BreakersSettings)

    def setup(self, app: web.Application) -> None:
        self.registry = app[BREAKERS] = BreakerRegistry(
            self.settings, registry_of(app), app[BROADCAST]
        )

    @contextlib.asynccontextmanager
    async def lifespan(self, app: web.Application) -> AsyncIterator[None]:
        async with background("keel.breakers.events", self.registry.dispatch):
            yield

    async def readiness(self) -> Readiness:
        refusing = [b for b in self.registry if b.state in ("open", "forced_open")]
        if not refusing:
            return READY
        # Each plugin degrades in its own declared way; this lists who is cut off.
        return Readiness("degraded", "; ".join(f"{b.name}: {b.state}" for b in refusing))

    def state(self) -> dict[str, Any]:
        return {
            "cross_instance": self.registry.broadcast.cross_instance,
            "breakers": self.registry.snapshot(),
        }
