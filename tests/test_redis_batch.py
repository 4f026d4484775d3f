"""Automatic pipelining against a real Redis: batching, per-command errors, outages, NOSCRIPT."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from app.redis_batch import RedisBatcher
from tests.private_redis import PrivateRedis


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


async def test_commands_of_one_turn_share_one_pipeline(
    client: aioredis.Redis, redis_prefix: str
) -> None:
    batcher = RedisBatcher(client)
    key = redis_prefix + "counter"
    replies = await asyncio.gather(*(batcher.execute("INCR", key) for _ in range(100)))
    assert sorted(replies) == list(range(1, 101))
    assert batcher.batches == 1
    assert batcher.commands == 100
    assert await batcher.execute("GET", key) == b"100"  # a lone command still goes out
    assert batcher.batches == 2


async def test_max_batch_splits_a_large_turn(client: aioredis.Redis, redis_prefix: str) -> None:
    batcher = RedisBatcher(client, max_batch=10)
    await asyncio.gather(*(batcher.execute("INCR", redis_prefix + "n") for _ in range(25)))
    assert batcher.batches == 3


async def test_an_error_reply_fails_only_its_own_caller(
    client: aioredis.Redis, redis_prefix: str
) -> None:
    batcher = RedisBatcher(client)
    await client.set(redis_prefix + "text", "not a number")
    good, bad = await asyncio.gather(
        batcher.execute("INCR", redis_prefix + "number"),
        batcher.execute("INCR", redis_prefix + "text"),
        return_exceptions=True,
    )
    assert good == 1
    assert isinstance(bad, ResponseError)


async def test_scripts_run_by_hash_and_reload_after_a_script_flush(
    client: aioredis.Redis, redis_prefix: str
) -> None:
    batcher = RedisBatcher(client)
    source = f"return redis.call('INCR', KEYS[1]) -- {redis_prefix}"  # unique to this run
    sha = hashlib.sha1(source.encode()).hexdigest()
    assert await batcher.evalsha(sha, source, [redis_prefix + "s"], []) == 1
    assert await batcher.evalsha(sha, source, [redis_prefix + "s"], []) == 2


async def test_a_dead_server_fails_every_caller_of_the_batch(
    private_redis: PrivateRedis,
) -> None:
    client = aioredis.Redis.from_url(private_redis.url, socket_timeout=0.1)
    try:
        batcher = RedisBatcher(client)
        assert await batcher.execute("PING") is True
        private_redis.pause()
        outcomes = await asyncio.gather(
            *(batcher.execute("GET", f"k{n}") for n in range(5)), return_exceptions=True
        )
        assert all(isinstance(o, RedisError) for o in outcomes), outcomes
        private_redis.resume()
        assert await batcher.execute("PING") is True  # recovers by itself
    finally:
        await client.aclose()
