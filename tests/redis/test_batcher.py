"""Automatic pipelining against a real Redis: batching, per-command errors, outages, NOSCRIPT."""

from __future__ import annotations

import asyncio
import hashlib

import pytest
import uvloop
from redis.exceptions import RedisError, ResponseError

from app.redis.batcher import RedisBatcher
from tests.support.private_redis import PrivateRedis
from tests.support.redis import open_batcher
from tests.support.services import free_port


async def test_commands_of_one_turn_share_one_pipeline(
    redis_batch: RedisBatcher, redis_prefix: str
) -> None:
    batcher = redis_batch
    key = redis_prefix + "counter"
    replies = await asyncio.gather(*(batcher.execute("INCR", key) for _ in range(100)))
    assert sorted(replies) == list(range(1, 101))
    assert batcher.batches == 1
    assert batcher.commands == 100
    assert await batcher.execute("GET", key) == b"100"  # a lone command still goes out
    assert batcher.batches == 2


async def test_max_batch_splits_a_large_turn(redis_batch: RedisBatcher, redis_prefix: str) -> None:
    batcher = redis_batch
    batcher.max_batch = 10
    await asyncio.gather(*(batcher.execute("INCR", redis_prefix + "n") for _ in range(25)))
    assert batcher.batches == 3


async def test_an_error_reply_fails_only_its_own_caller(
    redis_batch: RedisBatcher, redis_prefix: str
) -> None:
    batcher = redis_batch
    await batcher.client.set(redis_prefix + "text", "not a number")
    results: list[object] = await asyncio.gather(
        batcher.execute("INCR", redis_prefix + "number"),
        batcher.execute("INCR", redis_prefix + "text"),
        return_exceptions=True,
    )
    good, bad = results
    assert good == 1
    assert isinstance(bad, ResponseError)


async def test_scripts_run_by_hash_and_reload_after_a_script_flush(
    redis_batch: RedisBatcher, redis_prefix: str
) -> None:
    batcher = redis_batch
    source = f"return redis.call('INCR', KEYS[1]) -- {redis_prefix}"  # unique to this run
    sha = hashlib.sha1(source.encode()).hexdigest()
    assert await batcher.evalsha(sha, source, [redis_prefix + "s"], []) == 1
    assert await batcher.evalsha(sha, source, [redis_prefix + "s"], []) == 2


async def test_unknown_scripts_in_one_batch_each_run_once_in_their_order(
    redis_batch: RedisBatcher, redis_prefix: str
) -> None:
    key = redis_prefix + "order"
    source = f"return redis.call('RPUSH', KEYS[1], ARGV[1]) -- {redis_prefix}"
    sha = hashlib.sha1(source.encode()).hexdigest()
    replies = await asyncio.gather(
        *(redis_batch.evalsha(sha, source, [key], [n]) for n in range(5)),
        redis_batch.execute("RPUSH", key, "plain"),
    )
    assert sorted(replies) == [1, 2, 3, 4, 5, 6]  # each ran exactly once
    pushed = await redis_batch.execute("LRANGE", key, 0, -1)
    scripts = [value for value in pushed if value != b"plain"]
    assert scripts == [b"0", b"1", b"2", b"3", b"4"]  # and the scripts in the order sent


async def test_a_failing_unknown_script_reports_its_own_error(
    redis_batch: RedisBatcher, redis_prefix: str
) -> None:
    source = f"return redis.call('INCR', KEYS[1]) -- {redis_prefix}"
    sha = hashlib.sha1(source.encode()).hexdigest()
    await redis_batch.execute("SET", redis_prefix + "word", "not a number")
    with pytest.raises(ResponseError, match="not an integer"):
        await redis_batch.evalsha(sha, source, [redis_prefix + "word"], [])
    assert await redis_batch.execute("PING") == b"PONG"  # the connection is still in step


async def test_a_dead_server_fails_every_caller_of_the_batch(
    private_redis: PrivateRedis,
) -> None:
    async with open_batcher(private_redis.url, socket_timeout=0.1) as batcher:
        assert await batcher.execute("PING") == b"PONG"
        private_redis.pause()
        outcomes = await asyncio.gather(
            *(batcher.execute("GET", f"k{n}") for n in range(5)), return_exceptions=True
        )
        assert all(isinstance(o, RedisError) for o in outcomes), outcomes
        private_redis.resume()
        assert await batcher.execute("PING") == b"PONG"  # recovers by itself


async def test_the_url_chooses_the_database(redis_url: str, redis_prefix: str) -> None:
    db1 = redis_url.rsplit("/", 1)[0] + "/1"
    async with open_batcher(db1) as batcher:
        assert await batcher.execute("SET", redis_prefix + "where", "db1") == b"OK"
        assert await batcher.client.get(redis_prefix + "where") == b"db1"
        await batcher.client.delete(redis_prefix + "where")


async def test_the_url_credentials_authenticate(private_redis: PrivateRedis) -> None:
    async with open_batcher(private_redis.url) as admin:
        await admin.execute("CONFIG", "SET", "requirepass", "s3cret")
    with_password = private_redis.url.replace("redis://", "redis://:s3cret@")
    async with open_batcher(with_password) as batcher:
        assert await batcher.execute("PING") == b"PONG"
    wrong = private_redis.url.replace("redis://", "redis://:wrong@")
    async with open_batcher(wrong) as batcher:
        with pytest.raises(RedisError):
            await batcher.execute("PING")


async def test_an_unreachable_server_fails_the_callers(redis_url: str) -> None:
    async with open_batcher(f"redis://127.0.0.1:{free_port()}/0") as batcher:
        outcomes = await asyncio.gather(
            batcher.execute("PING"), batcher.execute("PING"), return_exceptions=True
        )
        assert all(isinstance(o, RedisError) for o in outcomes), outcomes


def test_it_runs_on_uvloop(redis_url: str) -> None:
    """Production runs on uvloop, whose transports are not asyncio's classes."""

    async def ping() -> object:
        async with open_batcher(redis_url) as batcher:
            return await batcher.execute("PING")

    assert uvloop.run(ping()) == b"PONG"
