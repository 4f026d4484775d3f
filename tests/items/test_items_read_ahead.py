"""Item reads whose cache lookup rides in the rate limiter's script (app/cache/read_ahead.py).

The real app on SQLite shards, with the machine's Redis behind both the
limiter and the cache (a key prefix per test).
"""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient

from app.cache.cache import CACHE
from app.cache.redis_store import RedisBackend
from app.redis import REDIS
from tests.items.conftest import SQLITE_SHARDS
from tests.support.apps import StartApp

LAMP = {"name": "lamp", "price": 12.5, "tags": ["home"]}
LIMITED_AND_CACHED = '["metrics", "redis", "breakers", "ratelimit", "sharding", "cache"]'


@pytest.fixture
async def app_client(start_app: StartApp, redis_url: str, redis_prefix: str) -> TestClient:
    return await start_app(
        list(SQLITE_SHARDS),
        PLUGINS__ENABLED=LIMITED_AND_CACHED,
        REDIS__URL=redis_url,
        REDIS__KEY_PREFIX=redis_prefix,
        RATELIMIT__DEFAULT="1000/second",
    )


def commands_sent(client: TestClient) -> int:
    batch = client.app[REDIS].batch
    assert batch is not None
    return batch.commands


async def read(client: TestClient, item_id: str) -> tuple[int, str]:
    response = await client.get(f"/api/items/{item_id}")
    await response.read()
    return response.status, response.headers.get("Cache-Status", "")


async def test_a_cached_read_costs_one_redis_command(app_client: TestClient) -> None:
    created = await (await app_client.post("/api/items", json=LAMP)).json()
    assert await read(app_client, created["id"]) == (200, "keel; fwd=miss")
    before = commands_sent(app_client)
    for _ in range(5):
        assert await read(app_client, created["id"]) == (200, "keel; hit")
    assert commands_sent(app_client) - before == 5  # the limit and the lookup: one script each


async def test_a_miss_read_ahead_holds_the_lease_and_fills(
    app_client: TestClient, redis_prefix: str
) -> None:
    created = await (await app_client.post("/api/items", json=LAMP)).json()
    before = commands_sent(app_client)
    assert await read(app_client, created["id"]) == (200, "keel; fwd=miss")
    # One script (limit + lease), then the fill: the lookup asked Redis nothing itself.
    assert commands_sent(app_client) - before == 2
    redis = app_client.app[REDIS].client
    assert await redis.exists(f"{redis_prefix}cache-lease:item:{created['id']}") == 0
    assert await redis.exists(f"{redis_prefix}cache:item:{created['id']}") == 1


async def test_a_refused_request_takes_no_lease(
    start_app: StartApp, redis_url: str, redis_prefix: str
) -> None:
    client = await start_app(
        list(SQLITE_SHARDS),
        PLUGINS__ENABLED=LIMITED_AND_CACHED,
        REDIS__URL=redis_url,
        REDIS__KEY_PREFIX=redis_prefix,
        RATELIMIT__DEFAULT="1/minute",
    )
    assert (await read(client, "never-created"))[0] == 404  # spends the budget
    assert (await read(client, "other"))[0] == 429
    redis = client.app[REDIS].client
    assert await redis.exists(f"{redis_prefix}cache-lease:item:other") == 0


async def test_a_value_from_before_an_outage_is_not_trusted_when_read_ahead(
    app_client: TestClient, redis_prefix: str
) -> None:
    created = await (await app_client.post("/api/items", json=LAMP)).json()
    await read(app_client, created["id"])
    backend = app_client.app[CACHE].backend
    assert isinstance(backend, RedisBackend)
    await backend.distrust_older()  # as after a partition: older values are reloaded
    assert await read(app_client, created["id"]) == (200, "keel; fwd=miss")
    assert await read(app_client, created["id"]) == (200, "keel; hit")


async def test_an_invalid_id_is_not_read_ahead(app_client: TestClient) -> None:
    before = commands_sent(app_client)
    response = await app_client.get("/api/items/not%20valid")
    assert response.status == 422
    assert commands_sent(app_client) - before == 1  # the limit only
