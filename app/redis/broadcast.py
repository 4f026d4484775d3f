"""The Redis transport of `app.core.broadcast`: one pub/sub channel every instance listens on.

Messages are JSON on `<key_prefix>broadcast`, read on a dedicated pub/sub
connection; the live instances an action waits for are the heartbeat's set
(`app.redis.service`). A lost connection is retried every second.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from redis.asyncio.client import PubSub

from app.core.background import background
from app.core.broadcast import TransportUnavailable
from app.core.outage import Outage
from app.redis.service import REDIS_ERRORS, RedisService

log = logging.getLogger("keel.redis")

RETRY_DELAY = 1.0


class RedisBroadcast:
    name = "redis"

    def __init__(self, service: RedisService) -> None:
        self.service = service
        self.channel = service.key("broadcast")
        self._subscribed = asyncio.Event()
        self.outage = Outage("broadcast channel: redis", log)

    @property
    def ready(self) -> bool:
        return self._subscribed.is_set()

    async def publish(self, message: dict[str, Any]) -> None:
        try:
            await self._client().publish(self.channel, json.dumps(message))
        except REDIS_ERRORS as exc:
            raise TransportUnavailable(str(exc) or type(exc).__name__) from exc

    async def live_instances(self) -> set[str]:
        try:
            members = await self._client().zrange(self.service.key("instances"), 0, -1)
        except REDIS_ERRORS as exc:
            raise TransportUnavailable(str(exc) or type(exc).__name__) from exc
        return {m.decode() if isinstance(m, bytes) else str(m) for m in members}

    def _client(self) -> Any:
        client = self.service.client
        if client is None:
            raise TransportUnavailable("the redis client is closed")
        return client

    @contextlib.asynccontextmanager
    async def listening(
        self, receive: Callable[[dict[str, Any]], Awaitable[None]]
    ) -> AsyncIterator[None]:
        pubsub = self._client().pubsub()
        with contextlib.suppress(*REDIS_ERRORS):
            await pubsub.subscribe(self.channel)  # an outage here is retried by the loop
            self._subscribed.set()
        try:
            async with background("keel.redis.broadcast", lambda: self._listen(pubsub, receive)):
                yield
        finally:
            self._subscribed.clear()
            with contextlib.suppress(*REDIS_ERRORS):
                await pubsub.aclose()

    async def _listen(
        self, pubsub: PubSub, receive: Callable[[dict[str, Any]], Awaitable[None]]
    ) -> None:
        while True:
            try:
                if not pubsub.subscribed:
                    await pubsub.subscribe(self.channel)
                    self._subscribed.set()
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            except REDIS_ERRORS as exc:
                self._subscribed.clear()
                self.outage.failed(exc, "operator actions apply on this instance only")
                await asyncio.sleep(RETRY_DELAY)
                continue
            self.outage.recovered()
            if message is None or message.get("type") != "message":
                continue
            try:
                decoded = json.loads(message["data"])
            except ValueError:
                decoded = None
            if not isinstance(decoded, dict):
                log.warning("ignoring a malformed broadcast message: %r", message["data"][:200])
                continue
            await receive(decoded)
