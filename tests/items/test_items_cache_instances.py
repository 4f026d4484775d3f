"""Two instances sharing one Redis and one set of PostgreSQL shards.

A write on one instance is never read stale on the other; a cold key is loaded
once across both; and a Redis partition (a private redis-server stopped with
SIGSTOP, then resumed) costs no errors and leaves no stale value behind.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from app.cache.cache import CACHE
from app.metrics import METRICS
from app.redis import REDIS
from tests.items.conftest import empty_items
from tests.support.apps import StartApp
from tests.support.private_redis import PrivateRedis

LAMP = {"name": "lamp", "price": 1.0, "tags": []}
CACHED = '["metrics", "redis", "sharding", "cache"]'


@pytest.fixture
async def pair_on(shared_pg_shards: list[str], start_app: StartApp) -> Any:
    await empty_items(shared_pg_shards)

    async def start(redis_url: str, prefix: str, **env: str) -> tuple[TestClient, TestClient]:
        settings = {
            "PLUGINS__ENABLED": CACHED,
            "REDIS__URL": redis_url,
            "REDIS__KEY_PREFIX": prefix,
            # Health pings count as shard queries: keep them out of the counts.
            "SHARDING__HEALTH_INTERVAL": "60",
            **env,
        }
        first = await start_app(shared_pg_shards, **settings)
        second = await start_app(shared_pg_shards, **settings)
        return first, second

    return start


def shard_queries(*clients: TestClient) -> float:
    total = 0.0
    for client in clients:
        registry = client.app[METRICS].registry
        total += sum(
            registry.get_sample_value("keel_shard_queries_total", {"shard": f"shard.{n}"}) or 0
            for n in range(3)
        )
    return total


async def read(client: TestClient, item_id: str) -> tuple[int, str, Any]:
    response = await client.get(f"/api/items/{item_id}")
    return response.status, response.headers.get("Cache-Status", ""), await response.json()


async def test_a_write_on_one_instance_is_never_read_stale_on_the_other(
    pair_on: Any, redis_url: str, redis_prefix: str
) -> None:
    a, b = await pair_on(redis_url, redis_prefix)
    created = await (await a.post("/api/items", json=LAMP)).json()
    item_id = created["id"]
    for version in range(2, 22):
        status, _, body = await read(b, item_id)  # b's reads fill the shared cache
        assert (status, body["version"]) == (200, version - 1)
        assert (await read(b, item_id))[1] == "keel; hit"
        put = await a.put(f"/api/items/{item_id}", json={**LAMP, "price": version})
        assert put.status == 200
        status, _, body = await read(b, item_id)
        assert (status, body["version"], body["price"]) == (200, version, version)


async def test_a_cold_key_is_loaded_once_across_instances(
    pair_on: Any, redis_url: str, redis_prefix: str
) -> None:
    a, b = await pair_on(redis_url, redis_prefix)
    created = await (await a.post("/api/items", json=LAMP)).json()
    await a.app[CACHE].delete(f"item:{created['id']}")
    before = shard_queries(a, b)
    answers = await asyncio.gather(
        *(read(client, created["id"]) for _ in range(25) for client in (a, b))
    )
    assert shard_queries(a, b) - before == 1
    assert all(status == 200 and body == created for status, _, body in answers)


async def local_tiers_listening(*clients: TestClient) -> None:
    async with asyncio.timeout(10):
        while not all(c.app[CACHE].backend.listening for c in clients):  # noqa: ASYNC110
            await asyncio.sleep(0.01)


async def test_the_local_tier_is_invalidated_on_every_instance_through_pubsub(
    pair_on: Any, redis_url: str, redis_prefix: str
) -> None:
    a, b = await pair_on(redis_url, redis_prefix, CACHE__LOCAL_TTL="30")
    await local_tiers_listening(a, b)
    created = await (await a.post("/api/items", json=LAMP)).json()
    item_id = created["id"]
    key = f"item:{item_id}"
    await read(b, item_id)
    local = b.app[CACHE].backend.local
    assert await local.get(key) is not None  # b now answers from its own memory
    pipelines = b.app[REDIS].batch.batches
    assert (await read(b, item_id))[1] == "keel; hit"
    assert b.app[REDIS].batch.batches == pipelines  # without a Redis round trip

    put = await a.put(f"/api/items/{item_id}", json={**LAMP, "price": 2.0})
    started = time.monotonic()
    assert put.status == 200
    async with asyncio.timeout(5):
        while await local.get(key) is not None:  # noqa: ASYNC110
            await asyncio.sleep(0.001)
    print(f"invalidation reached the other instance after {time.monotonic() - started:.4f} s")
    status, _, body = await read(b, item_id)
    assert (status, body["version"]) == (200, 2)


@pytest.mark.parametrize("local_ttl", ["0", "30"], ids=["redis", "redis+local"])
async def test_a_partition_costs_no_errors_and_leaves_nothing_stale(
    pair_on: Any, private_redis: PrivateRedis, local_ttl: str
) -> None:
    a, b = await pair_on(
        private_redis.url,
        "keel-partition:",
        REDIS__SOCKET_TIMEOUT="0.1",
        CACHE__LOCAL_TTL=local_ttl,
    )
    if local_ttl != "0":
        await local_tiers_listening(a, b)
    created = await (await a.post("/api/items", json=LAMP)).json()
    item_id = created["id"]
    await read(a, item_id)
    assert (await read(b, item_id))[1] == "keel; hit"  # version 1 is in Redis

    private_redis.pause()
    for client in (a, b):  # until each notices: Redis times out, the local tier lapses
        async with asyncio.timeout(10):
            while True:
                status, cache_status, body = await read(client, item_id)
                assert (status, body["version"]) == (200, 1)
                if cache_status == "keel; fwd=bypass":
                    break
    put = await a.put(f"/api/items/{item_id}", json={**LAMP, "price": 2.0})
    assert put.status == 200  # the write succeeds; its invalidation is remembered
    assert a.app[CACHE].pending == {f"item:{item_id}"}
    for client in (a, b):
        status, cache_status, body = await read(client, item_id)
        assert (status, cache_status, body["version"]) == (200, "keel; fwd=bypass", 2)

    private_redis.resume()
    seen_hit = {"a": False, "b": False}
    deadline = time.monotonic() + 10
    while not all(seen_hit.values()):
        assert time.monotonic() < deadline, f"the cache did not recover: {seen_hit}"
        for name, client in (("a", a), ("b", b)):
            status, cache_status, body = await read(client, item_id)
            assert status == 200
            assert body["version"] == 2, f"{name} served the stale version ({cache_status})"
            seen_hit[name] = seen_hit[name] or cache_status == "keel; hit"
        await asyncio.sleep(0.02)
    assert a.app[CACHE].pending == set()


async def test_a_write_acknowledged_before_its_instance_heals_is_not_read_stale_elsewhere(
    shared_pg_shards: list[str], start_app: StartApp, private_redis: PrivateRedis
) -> None:
    """After an outage the instances heal one by one. Here b is back on the cache at
    once while a's guard still refuses Redis (it saw failures): a write that a
    acknowledges then must still reach the cache before its 200, or b serves the
    version before it from a value it filled after healing."""
    await empty_items(shared_pg_shards)
    settings = {
        "PLUGINS__ENABLED": CACHED,
        "REDIS__URL": private_redis.url,
        "REDIS__KEY_PREFIX": "keel-heal-order:",
        "REDIS__SOCKET_TIMEOUT": "0.1",
        "SHARDING__HEALTH_INTERVAL": "60",
    }
    # a: refuses Redis for a minute after a failure, and no heartbeat probes it meanwhile.
    a = await start_app(
        shared_pg_shards, **settings, REDIS__RETRY_AFTER="60", REDIS__HEARTBEAT_INTERVAL="60"
    )
    b = await start_app(shared_pg_shards, **settings, REDIS__RETRY_AFTER="0.05")
    item_id = (await (await a.post("/api/items", json=LAMP)).json())["id"]

    private_redis.pause()
    for client in (a, b):
        async with asyncio.timeout(10):
            while (await read(client, item_id))[1] != "keel; fwd=bypass":
                pass
    private_redis.resume()
    async with asyncio.timeout(10):  # b heals and fills version 1 again
        while (await read(b, item_id))[1] != "keel; hit":  # noqa: ASYNC110
            await asyncio.sleep(0.02)
    assert not a.app[CACHE].usable  # a has not healed: its guard still refuses

    put = await a.put(f"/api/items/{item_id}", json={**LAMP, "price": 2.0})
    assert put.status == 200
    status, _, body = await read(b, item_id)
    assert (status, body["version"]) == (200, 2), "b served the version a overwrote"
