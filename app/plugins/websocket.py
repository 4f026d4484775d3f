"""The `websocket` plugin: `GET /ws` channels that span every instance.

Publishes `app[WEBSOCKET]` (a `WebSocketService`; see `app/websocket/service.py`
for the plugin author's API). With `[redis] url` set, publications cross
instances through Redis pub/sub (`RedisBus`); otherwise they stay in process
(`MemoryBus`). When the items API is enabled, every item change is published
on the `items` channel; when the queue plugin is, every job status change on
`jobs` (`{"event": <status>, "job": {…}}`, from `app[JOB_EVENTS]`).

At the drain step every client is closed with 1001, so open sockets never
hold shutdown up. In the worker role there is no `/ws` route,
but the service and the bus run: a worker's publications reach the serving
instances' clients through Redis.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from app.config import Config
from app.core.lifecycle import LIFECYCLE
from app.items import ITEMS, ItemEvent
from app.metrics import registry_of
from app.plugins import BasePlugin, Readiness, SettingsOf
from app.queue import JOB_EVENTS, JobEvent
from app.redis import REDIS
from app.websocket import WEBSOCKET, WebSocketService, WebSocketSettings
from app.websocket.bus import Deliver
from app.websocket.connection import GOING_AWAY
from app.websocket.endpoint import Endpoint
from app.websocket.metrics import WebSocketCollector
from app.websocket.redis_bus import RedisBus

log = logging.getLogger("keel.websocket")


def item_message(event: ItemEvent) -> dict[str, Any]:
    """What the `items` channel carries for one item change."""
    if event.item is None:
        return {"event": event.event, "id": event.id}
    return {"event": event.event, "item": event.item}


class WebSocketPlugin(BasePlugin):
    name = "websocket"
    optional = ("metrics", "redis", "sharding", "queue")
    settings = SettingsOf(WebSocketSettings)

    def setup(self, app: web.Application) -> None:
        redis = app.get(REDIS)
        if redis is not None and redis.enabled:

            def bus(deliver: Deliver) -> RedisBus:
                assert redis is not None
                return RedisBus(deliver, redis)

            service = WebSocketService(self.settings, bus=bus)
        else:
            service = WebSocketService(self.settings)
        self.service = app[WEBSOCKET] = service
        registry_of(app).register(WebSocketCollector(service))
        if ITEMS in app:
            service.relay(app[ITEMS].events, "items", item_message)
        if JOB_EVENTS in app:
            service.relay(app[JOB_EVENTS], "jobs", JobEvent.message)
        lifecycle = app[LIFECYCLE]
        if lifecycle.role == "serve":
            endpoint = Endpoint(service, lifecycle)
            app.router.add_get("/ws", endpoint.handle, name="websocket", allow_head=False)

    async def drain(self, app: web.Application) -> None:
        if open_sockets := len(self.service.hub.connections):
            log.info("closing %d websocket(s) with 1001", open_sockets)
        await self.service.close_all(GOING_AWAY, "server shutting down")

    @contextlib.asynccontextmanager
    async def lifespan(self, app: web.Application) -> AsyncIterator[None]:
        async with self.service.bus.running():
            yield

    async def readiness(self) -> Readiness:
        bus = self.service.bus
        if bus.healthy:
            return Readiness("ok", f"bus: {bus.backend}")
        return Readiness(
            "degraded", f"{bus.problem}; messages reach this instance's subscribers only"
        )

    def state(self) -> dict[str, Any]:
        return self.service.state()

    def reload(self, config: Config) -> list[str]:
        super().reload(config)
        return self.service.configure(self.settings)

    def amend_openapi(self, document: dict[str, Any]) -> None:
        """`/ws` is no HTTP operation (OpenAPI has none for WebSockets): it is described
        in the extension `x-websockets`, beside the paths."""
        document.setdefault("x-websockets", {})["/ws"] = {
            "summary": "WebSocket: subscribe to channels, publish, receive messages",
            "description": (
                "A WebSocket handshake (GET with Upgrade: websocket). JSON text frames:"
                " `subscribe`, `unsubscribe`, `publish`, `ping` from the client; `message`,"
                " `ok`, `error`, `pong` from the server (see the README, WebSocket). A plain"
                " GET is answered 400. Handshake refusals: 403 Origin not in `[websocket]"
                " allowed_origins`, 503 shutting down (`Retry-After`). Close codes: 1001"
                " shutdown, 1009 frame over `max_message_size`, 1013 the client could not"
                " keep up."
            ),
        }
