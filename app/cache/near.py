"""An in-process tier in front of Redis, kept coherent through Redis pub/sub.

A hit in process memory costs no round trip. Every invalidation (DEL) is
followed in the same pipeline by a PUBLISH of the keys on
`<prefix>cache-invalidate`; every instance listens there and drops them from
its own tier, typically well under a millisecond later. Entries also live at
most `local_ttl` seconds.

The tier is only read while the listener has *recently* heard from Redis: it
pings every `PING_INTERVAL`, and Redis answers in order on that connection, so
a pong proves that every invalidation published before it has arrived. The
tier is trusted for `TRUST_WINDOW` after the last thing heard, which bounds
how long a reader elsewhere can see an overwritten value — even when Redis
stops answering (a partition) — to about 150 ms. Until the subscription is
confirmed, and after the connection breaks, the tier is emptied.
The trade: a reader on another instance may see the old value for the moment
the invalidation takes to arrive. Without the tier (the default) a write is
never followed by a stale read anywhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Sequence

from app.cache.backend import CacheBackend
from app.cache.memory import MemoryBackend
from app.cache.redis_store import RedisBackend
from app.core.background import background
from app.core.outage import Outage
from app.redis import REDIS_ERRORS

log = logging.getLogger("keel.cache")

PING_INTERVAL = 0.05
TRUST_WINDOW = 0.15
LISTENER_DEADLINE = 3.0  # silence this long: reconnect
RECONNECT_DELAY = 0.5


class NearCacheBackend(CacheBackend):
    name = "redis+local"
    errors = REDIS_ERRORS

    def __init__(self, remote: RedisBackend, local: MemoryBackend, local_ttl: float) -> None:
        self.remote = remote
        self.local = local
        self.local_ttl = local_ttl
        self.channel = remote._values.removesuffix("cache:") + "cache-invalidate"
        self._subscribed = False
        self._last_heard = 0.0
        self.received = 0
        self.outage = Outage("cache invalidation listener: redis", log)

    @property
    def listening(self) -> bool:
        """May the tier be read? Subscribed, and heard from Redis within the trust window."""
        return self._subscribed and time.monotonic() - self._last_heard < TRUST_WINDOW

    def _remember(self, key: str, value: bytes, ttl: float) -> None:
        if self.listening:
            self.local._store(key, value, min(ttl, self.local_ttl))

    async def get(self, key: str) -> bytes | None:
        if self.listening and (value := await self.local.get(key)) is not None:
            return value
        value = await self.remote.get(key)
        if value is not None:
            self._remember(key, value, self.local_ttl)
        return value

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        await self.delete([key])  # other instances must drop their copies
        await self.remote.set(key, value, ttl)
        self._remember(key, value, ttl)

    async def delete(self, keys: Sequence[str]) -> None:
        await self.local.delete(keys)
        if keys:
            deleting = self.remote.delete(keys)
            publishing = self.remote.batch.execute("PUBLISH", self.channel, "\n".join(keys))
            await asyncio.gather(deleting, publishing)  # one pipeline

    async def lease(self, key: str, token: str, lease_ttl: float) -> bytes | bool:
        if self.listening and (value := await self.local.get(key)) is not None:
            return value
        found = await self.remote.lease(key, token, lease_ttl)
        if isinstance(found, bytes):
            self._remember(key, found, self.local_ttl)
        return found

    async def fill(self, key: str, token: str, value: bytes, ttl: float) -> bool:
        stored = await self.remote.fill(key, token, value, ttl)
        if stored:
            self._remember(key, value, ttl)
        return stored

    async def distrust_older(self) -> None:
        await self.local.clear()
        await self.remote.distrust_older()

    async def clear(self) -> None:
        await self.local.clear()
        await self.remote.clear()

    def entries(self) -> int:
        return self.local.entries()

    def _stop_trusting_local(self) -> None:
        self._subscribed = False
        self.local._values.clear()

    @contextlib.asynccontextmanager
    async def listening_for_invalidations(self) -> AsyncIterator[None]:
        try:
            async with background("keel.cache.invalidations", self._listen):
                yield
        finally:
            self._stop_trusting_local()

    async def _listen(self) -> None:
        while True:
            try:
                await self._listen_once()
            except REDIS_ERRORS as exc:
                self.outage.failed(exc, "local tier off")
            self._stop_trusting_local()
            await asyncio.sleep(RECONNECT_DELAY)

    async def _listen_once(self) -> None:
        pubsub = self.remote.client.pubsub()
        try:
            await pubsub.subscribe(self.channel)
            last_heard = time.monotonic()
            last_ping = last_heard
            while True:
                message = await pubsub.get_message(timeout=PING_INTERVAL / 2)
                now = time.monotonic()
                if message is not None:
                    last_heard = self._last_heard = now
                    kind = message["type"]
                    if kind == "subscribe":
                        await self.local.clear()  # anything missed before is gone
                        self._subscribed = True
                        self.outage.recovered("local tier on")
                    elif kind == "message":
                        self.received += 1
                        await self.local.delete(message["data"].decode().split("\n"))
                if now - last_ping >= PING_INTERVAL:
                    await pubsub.ping()
                    last_ping = now
                if now - last_heard > LISTENER_DEADLINE:
                    raise TimeoutError(
                        f"no answer on the pub/sub connection for {LISTENER_DEADLINE} s"
                    )
        finally:
            self._stop_trusting_local()
            with contextlib.suppress(*REDIS_ERRORS):
                await pubsub.aclose()  # type: ignore[no-untyped-call]
