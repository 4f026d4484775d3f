"""The `websocket` plugin: `GET /ws` channels that span every instance.

Publishes `app[WEBSOCKET]` (a `WebSocketService`; see `app/websocket/service.py`
for the plugin author's API). With `[redis] url` set, publications cross
instances through Redis pub/sub (`RedisBus`), channel history lives in Redis
(`RedisHistory`) and presence is counted there (`RedisPresence`); otherwise
all three stay in process. It also serves the browser client,
`GET /static/keel-ws.js` (`static/keel-ws.js`). When the items API is
enabled, every item change is published on the `items` channel; when the
queue plugin is, every job status change on `jobs` (`{"event": <status>,
"job": {…}}`, from `app[JOB_EVENTS]`).

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
from app.redis import REDIS, RedisService
from app.websocket import WEBSOCKET, WebSocketService, WebSocketSettings
from app.websocket.browser_client import (
    BROWSER_CLIENT_OPENAPI,
    BROWSER_CLIENT_PATH,
    BrowserClient,
)
from app.websocket.bus import Bus, Deliver
from app.websocket.connection import GOING_AWAY
from app.websocket.endpoint import Endpoint
from app.websocket.history import History
from app.websocket.hub import Hub
from app.websocket.metrics import WebSocketCollector
from app.websocket.redis_bus import RedisBus
from app.websocket.redis_history import RedisHistory
from app.websocket.redis_presence import RedisPresence

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
    serving = False

    def setup(self, app: web.Application) -> None:
        redis = app.get(REDIS)
        lifecycle = app[LIFECYCLE]
        if redis is not None and redis.enabled:
            service = self._over_redis(redis, lifecycle.instance.id)
        else:
            service = WebSocketService(self.settings)
        self.service = app[WEBSOCKET] = service
        registry_of(app).register(WebSocketCollector(service))
        if ITEMS in app:
            service.relay(app[ITEMS].events, "items", item_message)
        if JOB_EVENTS in app:
            service.relay(app[JOB_EVENTS], "jobs", JobEvent.message)
        self.serving = lifecycle.role == "serve"
        if self.serving:
            endpoint = Endpoint(service, lifecycle)
            app.router.add_get("/ws", endpoint.handle, name="websocket", allow_head=False)
            app.router.add_get(BROWSER_CLIENT_PATH, BrowserClient().handle, name="keel-ws.js")

    def _over_redis(self, redis: RedisService, instance_id: str) -> WebSocketService:
        """The service with its bus, history and presence in Redis."""

        def bus(deliver: Deliver) -> RedisBus:
            return RedisBus(deliver, redis)

        def history(deliver: Deliver, bus: Bus, size: int, ttl: float) -> History:
            assert isinstance(bus, RedisBus)
            return RedisHistory(deliver, redis, bus, size, ttl)

        def presence(hub: Hub) -> RedisPresence:
            return RedisPresence(hub, redis, instance_id)

        return WebSocketService(self.settings, bus=bus, history=history, presence=presence)

    async def drain(self, app: web.Application) -> None:
        if open_sockets := len(self.service.hub.connections):
            log.info("closing %d websocket(s) with 1001", open_sockets)
        await self.service.close_all(GOING_AWAY, "server shutting down")

    @contextlib.asynccontextmanager
    async def lifespan(self, app: web.Application) -> AsyncIterator[None]:
        async with self.service.running():
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

    def openapi_paths(self) -> dict[str, Any]:
        return BROWSER_CLIENT_OPENAPI if self.serving else {}

    def amend_openapi(self, document: dict[str, Any]) -> None:
        """`/ws` is no HTTP operation (OpenAPI has none for WebSockets): it is described
        in the extension `x-websockets`, beside the paths."""
        document.setdefault("x-websockets", {})["/ws"] = {
            "summary": "WebSocket: subscribe to channels, publish, receive messages",
            "description": (
                "A WebSocket handshake (GET with Upgrade: websocket). JSON text frames:"
                " `subscribe` (with `since: {offset, epoch}` to recover what was missed),"
                " `unsubscribe`, `publish`, `presence`, `ping` from the client; `message`"
                " (with `offset` and `epoch` when `[websocket] history_size` > 0), `ok`"
                " (`recovered`, `offset`, `epoch` for a subscribe), `presence`, `error`,"
                " `pong` from the server (see the README, WebSocket). A plain"
                " GET is answered 400. Handshake refusals: 403 Origin not in `[websocket]"
                " allowed_origins`, 503 shutting down (`Retry-After`). Close codes: 1001"
                " shutdown, 1009 frame over `max_message_size`, 1013 the client could not"
                " keep up."
            ),
        }
