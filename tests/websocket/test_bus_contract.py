"""One contract for every bus: the in-process one and Redis pub/sub."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis

from app.core.config_schema import SecretUrl
from app.core.guard import MinimalGuard
from app.redis import RedisService, RedisSettings
from app.websocket.bus import Bus, MemoryBus
from app.websocket.redis_bus import RedisBus
from tests.support.polling import eventually

Delivered = list[tuple[str, bytes]]


def recorder(into: Delivered) -> Callable[[str, bytes], int]:
    def deliver(channel: str, payload: bytes) -> int:
        into.append((channel, payload))
        return 1

    return deliver


@contextlib.asynccontextmanager
async def redis_service(url: str, prefix: str) -> AsyncIterator[RedisService]:
    """What the redis plugin's lifespan provides: a client and its batcher."""
    service = RedisService(
        RedisSettings(url=SecretUrl(url), key_prefix=prefix), MinimalGuard("redis")
    )
    service.open()
    try:
        yield service
    finally:
        await service.close()


@contextlib.asynccontextmanager
async def running_bus(kind: str, request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    delivered: Delivered = []
    bus: Bus
    async with contextlib.AsyncExitStack() as stack:
        if kind == "memory":
            bus = MemoryBus(recorder(delivered))
        else:
            url = request.getfixturevalue("redis_url")
            prefix = request.getfixturevalue("redis_prefix")
            redis = await stack.enter_async_context(redis_service(url, prefix))
            bus = RedisBus(recorder(delivered), redis)
        await stack.enter_async_context(bus.running())
        yield bus, delivered


@pytest.fixture(params=["memory", "redis"])
async def bus(request: pytest.FixtureRequest) -> AsyncIterator[tuple[Bus, Delivered]]:
    async with running_bus(request.param, request) as running:
        yield running


async def test_publish_delivers_here_before_it_returns_unchanged_once(bus) -> None:
    bus, delivered = bus
    await bus.publish("chat.x", b'{"op":"message"}')
    assert delivered == [("chat.x", b'{"op":"message"}')]
    bus.watch("chat.x")
    await bus.ready("chat.x")
    await bus.publish("chat.x", b"2")
    await asyncio.sleep(0.05)  # a bus that echoed its own messages would show it now
    assert delivered == [("chat.x", b'{"op":"message"}'), ("chat.x", b"2")]


async def test_order_is_kept(bus) -> None:
    bus, delivered = bus
    bus.watch("chat.x")
    await bus.ready("chat.x")
    await asyncio.gather(*(bus.publish("chat.x", str(n).encode()) for n in range(200)))
    assert [payload for _, payload in delivered] == [str(n).encode() for n in range(200)]


async def test_a_healthy_bus_reports_its_backend(bus) -> None:
    bus, _ = bus
    assert bus.healthy
    assert bus.problem == ""
    state = bus.state()
    assert state["backend"] == bus.backend
    assert state["healthy"] is True
    bus.unwatch("never.watched")  # harmless


# --- between instances (Redis) -------------------------------------------------------


@pytest.fixture
async def pair(request: pytest.FixtureRequest) -> AsyncIterator[tuple[Any, Any]]:
    async with running_bus("redis", request) as a, running_bus("redis", request) as b:
        yield a, b


async def numsub(url: str, channel: str) -> int:
    client = aioredis.Redis.from_url(url)
    try:
        ((_, count),) = await client.pubsub_numsub(channel)
        return int(count)
    finally:
        await client.aclose()


async def numsub_becomes(url: str, channel: str, expected: int, timeout: float = 2.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while (count := await numsub(url, channel)) != expected:
        assert asyncio.get_running_loop().time() < deadline, f"NUMSUB {channel}: {count}"
        await asyncio.sleep(0.01)


async def test_a_publication_reaches_every_instance_watching_once(
    pair, redis_url: str, redis_prefix: str
) -> None:
    (a, a_got), (b, b_got) = pair
    b.watch("chat.x")
    await b.ready("chat.x")
    assert b.subscribed() == {"chat.x"}
    assert await numsub(redis_url, f"{redis_prefix}ws:chat.x") == 1
    for n in range(5):
        await a.publish("chat.x", str(n).encode())
    await eventually(lambda: len(b_got) == 5, what="b to receive")
    assert b_got == [("chat.x", str(n).encode()) for n in range(5)]
    assert a_got == b_got  # a delivered its own locally, and only once
    assert (a.received, b.received) == (0, 5)


async def test_an_instance_receives_only_the_channels_it_watches(
    pair, redis_url: str, redis_prefix: str
) -> None:
    (a, _), (b, b_got) = pair
    b.watch("chat.y")
    await b.ready("chat.y")
    await a.publish("chat.x", b"not for b")
    await a.publish("chat.y", b"for b")
    await eventually(lambda: b_got == [("chat.y", b"for b")], what="b to receive chat.y")
    assert await numsub(redis_url, f"{redis_prefix}ws:chat.x") == 0
    assert b.received == 1

    b.unwatch("chat.y")
    await eventually(lambda: not b.subscribed(), what="b to unsubscribe")
    await numsub_becomes(redis_url, f"{redis_prefix}ws:chat.y", 0)
    await a.publish("chat.y", b"after")
    await asyncio.sleep(0.05)
    assert b.received == 1
