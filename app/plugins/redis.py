"""The `redis` plugin: one shared `redis.asyncio` client and the instance heartbeat.

With `[redis] url = ""` (the default) there is no client and the plugin does
nothing: the cache, limits and WebSocket bus stay in-process. With a URL, every
Redis-backed plugin shares this one connection pool, with short timeouts so a
slow Redis costs latency, not stuck requests.

The heartbeat lets plugins and the dashboard count live instances (the rate
limiter divides its limit by that count when Redis goes away): every
`heartbeat_interval` this instance scores itself with the current time in the
sorted set `<key_prefix>instances`, drops members older than `heartbeat_ttl`
and reads the count. Under an outage the last count seen is kept.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from aiohttp import web
from prometheus_client.core import CounterMetricFamily, Metric
from redis.exceptions import RedisError

from app.config import Config
from app.core.config_schema import SecretUrl, check, positive
from app.core.guard import Guard, MinimalGuard, Refused, call_guarded
from app.core.lifecycle import LIFECYCLE, Instance
from app.core.periodic import periodic
from app.plugins import READY, BasePlugin, Readiness
from app.plugins.metrics import METRICS
from app.redis_batch import RedisBatcher

log = logging.getLogger("keel.redis")

# What a failed Redis call raises: redis-py wraps most, a refused socket can be bare.
REDIS_ERRORS = (RedisError, OSError, TimeoutError)


def _redis_url(value: SecretUrl) -> str | None:
    url = value.reveal()
    if url and not url.startswith(("redis://", "rediss://", "unix://")):
        return f'expected "" or a URL like "redis://127.0.0.1:6379/0", got "{value.redacted}"'
    return None


@dataclass(frozen=True)
class RedisSettings:
    """`[redis]`."""

    url: SecretUrl = field(default=SecretUrl(""), metadata=check(_redis_url))
    key_prefix: str = "keel:"
    socket_timeout: float = field(default=0.25, metadata=check(positive))
    connect_timeout: float = field(default=0.5, metadata=check(positive))
    max_connections: int = field(default=64, metadata=check(positive))
    heartbeat_interval: float = field(default=2.0, metadata=check(positive))
    heartbeat_ttl: float = field(default=6.0, metadata=check(positive))
    # Seconds the minimal guard refuses Redis calls after a failure (until the
    # breakers plugin replaces it with the `redis` breaker).
    retry_after: float = field(default=1.0, metadata=check(positive))


class RedisService:
    """What the plugin publishes: the client (None without a URL) and the live-instance count."""

    def __init__(self, settings: RedisSettings) -> None:
        self.settings = settings
        self.client: aioredis.Redis | None = None
        # Request-path calls (rate limits, cache) go through the batcher: the
        # commands of one event-loop turn share one pipeline round trip.
        self.batch: RedisBatcher | None = None
        self.live_instances = 1
        self.last_error: str = ""
        self.last_ok: float | None = None
        # Every Redis user asks this guard first; the breakers plugin swaps in
        # the full `redis` breaker when it is enabled.
        self.breaker: Guard = MinimalGuard("redis", open_seconds=settings.retry_after)

    @property
    def enabled(self) -> bool:
        return bool(self.settings.url)

    def key(self, *parts: str) -> str:
        """A key under this deployment's prefix: `key("instances")` -> "keel:instances"."""
        return self.settings.key_prefix + ":".join(parts)

    def _open(self) -> aioredis.Redis:
        s = self.settings
        # A blocking pool: a burst beyond max_connections waits (up to the socket
        # timeout) for a free connection instead of failing the call.
        pool = aioredis.BlockingConnectionPool.from_url(
            s.url.reveal(),
            socket_timeout=s.socket_timeout,
            socket_connect_timeout=s.connect_timeout,
            max_connections=s.max_connections,
            timeout=s.socket_timeout,
            health_check_interval=30,
            decode_responses=False,
        )
        return aioredis.Redis.from_pool(pool)  # the client owns (and closes) the pool

    async def beat(self, instance: Instance) -> int:
        """Score this instance now, drop the stale ones and return how many are live."""
        assert self.client is not None
        now = time.time()
        members = self.key("instances")
        info = self.key("instance", instance.id)
        async with self.client.pipeline(transaction=True) as pipe:
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

    async def leave(self, instance: Instance) -> None:
        """Remove this instance from the live set at shutdown."""
        assert self.client is not None
        await self.client.zrem(self.key("instances"), instance.id)
        await self.client.delete(self.key("instance", instance.id))

    async def ping(self) -> None:
        assert self.client is not None
        await self.client.ping()


REDIS = web.AppKey("keel.redis", RedisService)


class BatchCollector:
    """Commands sent on the request path and the pipelines (round trips) that carried them."""

    def __init__(self, service: RedisService) -> None:
        self.service = service

    def collect(self) -> Iterator[Metric]:
        batch = self.service.batch
        commands, pipelines = (batch.commands, batch.batches) if batch else (0, 0)
        yield CounterMetricFamily(
            "keel_redis_commands", "Redis commands sent on the request path.", value=commands
        )
        yield CounterMetricFamily(
            "keel_redis_pipelines",
            "Round trips that carried them (commands of one event-loop turn share one).",
            value=pipelines,
        )


class RedisPlugin(BasePlugin):
    name = "redis"
    optional = ("metrics",)
    settings = RedisSettings

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        self.service = RedisService(config.section(RedisSettings))

    def setup(self, app: web.Application) -> None:
        app[REDIS] = self.service
        metrics = app.get(METRICS)
        if metrics is not None and self.service.enabled:
            metrics.registry.register(BatchCollector(self.service))

    @contextlib.asynccontextmanager
    async def lifespan(self, app: web.Application) -> AsyncIterator[None]:
        if not self.service.enabled:
            yield
            return
        instance = app[LIFECYCLE].instance
        self.service.client = self.service._open()
        self.service.batch = RedisBatcher(self.service.client)
        await self._beat_once(instance)  # an outage at startup degrades; it does not stop us
        heartbeat = periodic(
            "keel.redis.heartbeat",
            lambda: self.service.settings.heartbeat_interval,
            lambda: self._beat_once(instance),
        )
        try:
            async with heartbeat:
                yield
        finally:
            with contextlib.suppress(RedisError, OSError):
                await self.service.leave(instance)
            assert self.service.batch is not None
            await self.service.batch.aclose()
            await self.service.client.aclose()
            self.service.client = None
            self.service.batch = None

    async def _beat_once(self, instance: Instance) -> None:
        # The heartbeat goes through the breaker like any call would: it is
        # what notices an outage, and a recovery, when no request is asking.
        try:
            await call_guarded(
                self.service.breaker, lambda: self.service.beat(instance), REDIS_ERRORS
            )
        except Refused:
            return
        except REDIS_ERRORS as exc:
            if not self.service.last_error:
                log.warning(
                    "redis unreachable (%s); keeping %d live instance(s) as last seen",
                    exc,
                    self.service.live_instances,
                )
            self.service.last_error = str(exc) or type(exc).__name__
        else:
            if self.service.last_error:
                log.info("redis reachable again; %d live instance(s)", self.service.live_instances)
            self.service.last_error = ""
            self.service.last_ok = time.time()

    async def readiness(self) -> Readiness:
        if not self.service.enabled:
            return READY
        try:
            await self.service.ping()
        except (RedisError, OSError) as exc:
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
            "last_ok": s.last_ok,
            "breaker": s.breaker.state,
            "commands": s.batch.commands if s.batch else 0,
            "pipelines": s.batch.batches if s.batch else 0,
        }
