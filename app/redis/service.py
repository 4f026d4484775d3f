"""`RedisService`: the one Redis client of an instance, shared by every Redis user.

Built (not connected) when the application is built: the redis-py client and
the request-path batcher (`app.redis.batcher`) connect on first use, and
`close()` releases both. `client` reads None outside `open()`...`close()`.
Every call goes through `guard` first (the `redis` breaker when the breakers
plugin is enabled), given at construction.

The heartbeat lets plugins and the dashboard count live instances (the rate
limiter divides its limit by that count when Redis goes away): every
`heartbeat_interval` an instance scores itself with the current time in the
sorted set `<key_prefix>instances`, drops members older than `heartbeat_ttl`
and reads the count. During an outage the last count seen is kept.
"""

from __future__ import annotations

import json
import logging
import time

import redis.asyncio as aioredis
from aiohttp import web
from redis.exceptions import RedisError

from app.core.guard import Guard, Refused, call_guarded
from app.core.lifecycle import Instance
from app.core.outage import Outage
from app.redis.batcher import RedisBatcher
from app.redis.settings import RedisSettings

log = logging.getLogger("keel.redis")

# What a failed Redis call raises: redis-py wraps most, a refused socket can be bare.
REDIS_ERRORS = (RedisError, OSError, TimeoutError)


def _client(settings: RedisSettings) -> aioredis.Redis:
    # A blocking pool: a burst beyond max_connections waits (up to the socket
    # timeout) for a free connection instead of failing the call.
    pool = aioredis.BlockingConnectionPool.from_url(
        settings.url.reveal(),
        socket_timeout=settings.socket_timeout,
        socket_connect_timeout=settings.connect_timeout,
        max_connections=settings.max_connections,
        timeout=settings.socket_timeout,
        health_check_interval=30,
        decode_responses=False,
    )
    return aioredis.Redis.from_pool(pool)  # the client owns (and closes) the pool


class RedisService:
    """The client (None without a URL, or when closed), the batcher, the guard, live instances."""

    def __init__(self, settings: RedisSettings, guard: Guard) -> None:
        self.settings = settings
        self.guard = guard
        self._client = _client(settings) if settings.url else None
        # Request-path calls (rate limits, cache) go through the batcher: the
        # commands of one event-loop turn share one pipelined round trip.
        self.batch = RedisBatcher(self._client) if self._client is not None else None
        self._open = False
        self.live_instances = 1
        self.last_ok: float | None = None
        self.outage = Outage("redis", log)

    @property
    def enabled(self) -> bool:
        return self._client is not None

    @property
    def client(self) -> aioredis.Redis | None:
        return self._client if self._open else None

    @property
    def last_error(self) -> str:
        return self.outage.reason

    def key(self, *parts: str) -> str:
        """A key under this deployment's prefix: `key("instances")` -> "keel:instances"."""
        return self.settings.key_prefix + ":".join(parts)

    def open(self) -> None:
        """Hand the client out from now on (it connects on first use)."""
        self._open = self.enabled

    async def close(self) -> None:
        """Send what is queued, wait for the replies, then close every connection."""
        self._open = False
        if self.batch is not None:
            await self.batch.aclose()
        if self._client is not None:
            await self._client.aclose()

    async def beat(self, instance: Instance) -> int:
        """Score this instance now, drop the stale ones and return how many are live."""
        client = self._connected()
        now = time.time()
        members = self.key("instances")
        info = self.key("instance", instance.id)
        async with client.pipeline(transaction=True) as pipe:
            pipe.zadd(members, {instance.id: now})
            pipe.zremrangebyscore(members, "-inf", now - self.settings.heartbeat_ttl)
            pipe.zcard(members)
            pipe.set(
                info,
                json.dumps({"id": instance.id, "pid": instance.pid, "version": instance.version}),
                px=int(self.settings.heartbeat_ttl * 1000),
            )
            results = await pipe.execute()
        self.live_instances = max(1, int(results[2]))
        return self.live_instances

    async def beat_guarded(self, instance: Instance) -> None:
        """One heartbeat through the guard, as any call would go: it is what notices an
        outage, and a recovery, when no request is asking.

        While the guard refuses, the heartbeat is its probe: a PING outside the
        guard, and if Redis answers, `probe_succeeded()` lets calls through again
        (the heartbeat is then the first of them) — Redis users are back within a
        heartbeat of Redis, not at the end of the breaker's open time.
        """
        if self.guard.retry_after() > 0 and await self._answers():
            self.guard.probe_succeeded()
        try:
            await call_guarded(self.guard, lambda: self.beat(instance), REDIS_ERRORS)
        except Refused:
            return
        except REDIS_ERRORS as exc:
            self.outage.failed(exc, f"keeping {self.live_instances} live instance(s) as last seen")
        else:
            self.outage.recovered(f"{self.live_instances} live instance(s)")
            self.last_ok = time.time()

    async def leave(self, instance: Instance) -> None:
        """Remove this instance from the live set at shutdown."""
        client = self._connected()
        await client.zrem(self.key("instances"), instance.id)
        await client.delete(self.key("instance", instance.id))

    async def ping(self) -> None:
        await self._connected().ping()

    async def _answers(self) -> bool:
        try:
            await self.ping()
        except REDIS_ERRORS:
            return False
        return True

    def _connected(self) -> aioredis.Redis:
        client = self.client
        if client is None:
            raise RedisError("the redis client is not open")
        return client


REDIS = web.AppKey("keel.redis", RedisService)
