"""One contract for both histories: in process, and in Redis (two instances sharing it)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis

from app.core.config_schema import SecretUrl
from app.core.guard import MinimalGuard
from app.redis import RedisService, RedisSettings
from app.websocket import protocol
from app.websocket.history import History, Replay
from app.websocket.memory_history import MemoryHistory
from app.websocket.position import Position, position_of
from app.websocket.redis_bus import RedisBus
from app.websocket.redis_history import RedisHistory
from tests.support.clock import Clock
from tests.support.polling import eventually
from tests.support.services import free_port
from tests.websocket.test_bus_contract import Delivered, recorder, redis_service

CHANNEL = "chat.h"


def body(n: object) -> bytes:
    return protocol.message(CHANNEL, n)


def at(payload: bytes) -> Position:
    position = position_of(payload)
    assert position is not None, payload
    return position


def offsets(delivered: Delivered) -> list[int]:
    return [at(payload).offset for _, payload in delivered]


async def latest(history: History, since: Position | None = None) -> Position:
    replay = await history.read(CHANNEL, since)
    assert replay.latest is not None
    return replay.latest


def datas(payloads: list[bytes]) -> list[Any]:
    return [orjson.loads(p)["data"] for p in payloads]


@contextlib.asynccontextmanager
async def redis_history(
    url: str, prefix: str, size: int, ttl: float
) -> AsyncIterator[tuple[RedisHistory, Delivered]]:
    delivered: Delivered = []
    async with redis_service(url, prefix) as redis:
        deliver = recorder(delivered)
        bus = RedisBus(deliver, redis)
        history = RedisHistory(deliver, redis, bus, size, ttl)
        async with bus.running():
            bus.watch(CHANNEL)
            await bus.ready(CHANNEL)
            yield history, delivered


@pytest.fixture(params=["memory", "redis"])
def open_history(request: pytest.FixtureRequest) -> Callable[..., Any]:
    """`async with open_history(size=…, ttl=…) as (history, delivered)`: a running history
    whose deliveries (to this instance's subscribers of chat.h) are recorded."""

    @contextlib.asynccontextmanager
    async def open_one(size: int = 100, ttl: float = 300.0) -> AsyncIterator[Any]:
        if request.param == "memory":
            delivered: Delivered = []
            yield MemoryHistory(recorder(delivered), size, ttl), delivered
            return
        url = request.getfixturevalue("redis_url")
        prefix = request.getfixturevalue("redis_prefix")
        async with redis_history(url, prefix, size, ttl) as opened:
            yield opened

    return open_one


async def publish_all(history: History, values: range) -> None:
    for n in values:
        await history.publish(CHANNEL, body(n))


async def test_offsets_count_from_one_and_every_message_is_delivered_stamped(
    open_history,
) -> None:
    async with open_history() as (history, delivered):
        start = await history.read(CHANNEL, None)
        assert start.recovered is None
        assert start.latest is not None
        assert start.latest.offset == 0
        await asyncio.gather(*(history.publish(CHANNEL, body(n)) for n in range(50)))
        assert offsets(delivered) == list(range(1, 51))
        assert {at(p).epoch for _, p in delivered} == {start.latest.epoch}
        assert history.channels()[CHANNEL].offset == 50
        assert history.channels()[CHANNEL].messages == 50


async def test_since_replays_exactly_what_came_after_in_order(open_history) -> None:
    async with open_history() as (history, _):
        await publish_all(history, range(10))
        epoch = (await latest(history)).epoch
        replay = await history.read(CHANNEL, Position(6, epoch))
        assert replay.recovered is True
        assert replay.latest == Position(10, epoch)
        assert datas(replay.messages) == [6, 7, 8, 9]
        assert [at(p).offset for p in replay.messages] == [7, 8, 9, 10]

        assert await history.read(CHANNEL, Position(10, epoch)) == Replay(Position(10, epoch), True)
        assert datas((await history.read(CHANNEL, Position(0, epoch))).messages) == list(range(10))


async def test_what_cannot_be_recovered_says_so(open_history) -> None:
    async with open_history(size=5) as (history, _):
        await publish_all(history, range(10))
        now = await latest(history)
        assert history.channels()[CHANNEL].messages == 5  # capped
        for since in (
            Position(4, now.epoch),  # 5 fell out of the history
            Position(11, now.epoch),  # beyond the latest
            Position(8, "another-epoch"),
        ):
            assert await history.read(CHANNEL, since) == Replay(now, False), since
        # The oldest kept is 6: since 5 is exactly recoverable.
        replay = await history.read(CHANNEL, Position(5, now.epoch))
        assert (replay.recovered, datas(replay.messages)) == (True, [5, 6, 7, 8, 9])


async def test_two_redis_instances_never_share_an_offset(redis_url, redis_prefix) -> None:
    async with (
        redis_history(redis_url, redis_prefix, 5000, 300) as (a, a_got),
        redis_history(redis_url, redis_prefix, 5000, 300) as (b, b_got),
    ):
        await asyncio.gather(
            *(a.publish(CHANNEL, body(f"a{n}")) for n in range(1000)),
            *(b.publish(CHANNEL, body(f"b{n}")) for n in range(1000)),
        )
        await eventually(lambda: len(a_got) == len(b_got) == 2000, what="both to hear all")
        # Each instance got every message once, in offset order, with no gap.
        assert offsets(a_got) == offsets(b_got) == list(range(1, 2001))
        assert a_got == b_got
        replay = await a.read(CHANNEL, Position(0, at(a_got[0][1]).epoch))
        assert [p for _, p in a_got] == replay.messages


async def test_the_memory_history_expires_after_ttl(clock: Clock) -> None:
    delivered: Delivered = []
    history = MemoryHistory(recorder(delivered), 10, 60.0, clock=clock)
    await publish_all(history, range(3))
    first = await latest(history)
    clock.now += 50
    assert (await history.read(CHANNEL, Position(1, first.epoch))).recovered is True
    clock.now += 20  # 70 s after the last publish, 20 s after the last read
    replay = await history.read(CHANNEL, Position(1, first.epoch))
    assert (replay.recovered, replay.latest) == (False, first)  # messages gone, epoch kept
    assert await history.read(CHANNEL, Position(3, first.epoch)) == Replay(first, True)
    clock.now += 61  # unused for longer than ttl: the whole history goes
    await history.read("other", None)
    assert CHANNEL not in history.channels()
    again = await latest(history)
    assert again.offset == 0
    assert again.epoch != first.epoch


async def test_a_lost_redis_history_gets_a_new_epoch(redis_url, redis_prefix) -> None:
    async with redis_history(redis_url, redis_prefix, 10, 0.3) as (history, _):
        await publish_all(history, range(3))
        before = await latest(history)
        meta = f"{redis_prefix}ws:history:{CHANNEL}:meta"
        client = aioredis.Redis.from_url(redis_url)
        try:
            await eventually(lambda: _gone(client, meta), what="the history to expire (ttl 0.3 s)")
        finally:
            await client.aclose()
        replay = await history.read(CHANNEL, before)
        assert replay.recovered is False
        assert replay.latest is not None
        assert replay.latest.offset == 0
        assert replay.latest.epoch != before.epoch
        await history.publish(CHANNEL, body("again"))
        assert history.channels()[CHANNEL].offset == 1


async def _gone(client: aioredis.Redis, key: str) -> bool:
    return not await client.exists(key)


async def test_an_unreachable_redis_reads_unknown_and_holds_what_is_published() -> None:
    delivered: Delivered = []
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    redis = RedisService(
        RedisSettings(url=SecretUrl(url), connect_timeout=0.2), MinimalGuard("redis")
    )
    redis.open()
    try:
        deliver = recorder(delivered)
        history = RedisHistory(deliver, redis, RedisBus(deliver, redis), 10, 60)
        since = Position(3, "e")
        assert await history.read(CHANNEL, since) == Replay(None, False)
        assert await history.read(CHANNEL, None) == Replay(None, None)
        await history.publish(CHANNEL, body("held"))
        assert delivered == []  # delivered once numbered: when Redis answers
        assert (len(history.held), history.unstamped) == (1, 0)
        assert history.state()["last_error"]
    finally:
        await redis.close()
