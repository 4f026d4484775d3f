"""One contract, two backends: the in-process limiter and the Redis script.

Redis reads its own clock, so these tests use limits whose refill is far
slower than the test (an hour, a day): no assertion depends on timing.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from app.ratelimit.limits import Limit
from app.ratelimit.memory_limiter import Limiter, MemoryLimiter
from app.ratelimit.redis_limiter import SCRIPT_SHA, RedisLimiter
from tests.support.private_redis import PrivateRedis
from tests.support.redis import open_batcher

HOUR = Limit(5, 3600, "hour")


@pytest.fixture(params=["memory", "redis"])
async def limiter(request: pytest.FixtureRequest) -> AsyncIterator[tuple[Limiter, str]]:
    """(backend, key prefix) — Redis keys live under the test's private prefix."""
    if request.param == "memory":
        yield MemoryLimiter(), ""
        return
    url = request.getfixturevalue("redis_url")
    prefix = request.getfixturevalue("redis_prefix")
    async with open_batcher(url) as batcher:
        backend = RedisLimiter(batcher)
        await backend.load()
        yield backend, prefix


async def test_a_concurrent_burst_passes_exactly_the_quota(limiter) -> None:
    backend, prefix = limiter
    decisions = await asyncio.gather(*(backend.hit(prefix + "k", HOUR) for _ in range(30)))
    assert sum(d.allowed for d in decisions) == 5
    assert sorted(d.remaining for d in decisions if d.allowed) == [0, 1, 2, 3, 4]


async def test_remaining_counts_down_and_reset_grows(limiter) -> None:
    backend, prefix = limiter
    decisions = [await backend.hit(prefix + "k", HOUR) for _ in range(5)]
    assert [d.remaining for d in decisions] == [4, 3, 2, 1, 0]
    # Each allowed request books one interval (720 s) more; a little time passes in between.
    for n, decision in enumerate(decisions, start=1):
        assert n * 720_000_000 - 5_000_000 < decision.reset_us <= n * 720_000_000


async def test_a_refused_request_says_when_to_retry(limiter) -> None:
    backend, prefix = limiter
    for _ in range(5):
        await backend.hit(prefix + "k", HOUR)
    refused = await backend.hit(prefix + "k", HOUR)
    assert not refused.allowed
    assert refused.remaining == 0
    assert 715_000_000 < refused.reset_us <= 720_000_000


async def test_keys_are_independent(limiter) -> None:
    backend, prefix = limiter
    one = Limit(1, 86400, "day")
    assert (await backend.hit(prefix + "a", one)).allowed
    assert (await backend.hit(prefix + "b", one)).allowed
    assert not (await backend.hit(prefix + "a", one)).allowed


async def test_redis_keys_expire_when_the_budget_is_full_again(redis_batch, redis_prefix) -> None:
    await RedisLimiter(redis_batch).hit(redis_prefix + "k", HOUR)
    ttl = await redis_batch.client.pttl(redis_prefix + "k")
    assert 700_000 < ttl <= 720_000


async def test_the_script_is_reloaded_after_a_flush(private_redis: PrivateRedis) -> None:
    async with open_batcher(private_redis.url) as batcher:
        client = batcher.client
        backend = RedisLimiter(batcher)
        await backend.load()
        await client.script_flush()
        assert await client.script_exists(SCRIPT_SHA) == [False]
        assert (await backend.hit("k", HOUR)).allowed  # NOSCRIPT -> load -> EVALSHA
        assert await client.script_exists(SCRIPT_SHA) == [True]


async def test_a_cancelled_request_does_not_disturb_its_batch(redis_batch, redis_prefix) -> None:
    backend = RedisLimiter(redis_batch)
    hits = [asyncio.ensure_future(backend.hit(redis_prefix + "k", HOUR)) for _ in range(3)]
    await asyncio.sleep(0)  # all three are queued in one batch
    hits[0].cancel()
    rest = await asyncio.gather(*hits[1:])
    assert all(d.allowed for d in rest)
    await backend.close()  # nothing left in flight afterwards


async def test_a_batch_is_capped(redis_url, redis_prefix) -> None:
    async with open_batcher(redis_url) as batcher:
        batcher.max_batch = 4
        backend = RedisLimiter(batcher)
        decisions = await asyncio.gather(*(backend.hit(redis_prefix + "k", HOUR) for _ in range(9)))
        assert sum(d.allowed for d in decisions) == 5
