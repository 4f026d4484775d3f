"""Item reads through the cache plugin: Cache-Status, invalidation, single-flight.

Run against the in-process cache and the machine's Redis (a key prefix per
test), on SQLite and PostgreSQL shards.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from app.application import apply_reload
from app.cache.cache import CACHE
from app.metrics import METRICS
from tests.items.conftest import empty_items, layout_dsns
from tests.support.apps import StartApp

LAMP = {"name": "lamp", "price": 12.5, "tags": ["home"]}
CACHED = '["metrics", "redis", "sharding", "cache"]'


@pytest.fixture(params=["memory", "redis"])
def cache_env(request: pytest.FixtureRequest) -> dict[str, str]:
    # Health pings count as shard queries: keep them out of the counts.
    env = {"PLUGINS__ENABLED": CACHED, "SHARDING__HEALTH_INTERVAL": "60"}
    if request.param == "redis":
        env["REDIS__URL"] = request.getfixturevalue("redis_url")
        env["REDIS__KEY_PREFIX"] = request.getfixturevalue("redis_prefix")
    return env


@pytest.fixture
async def cached(
    layout: str, pg_shards: list[str], start_app: StartApp, cache_env: dict[str, str]
) -> TestClient:
    await empty_items(pg_shards)
    return await start_app(layout_dsns(layout, pg_shards), **cache_env)


def shard_queries(client: TestClient) -> float:
    registry = client.app[METRICS].registry
    return sum(
        registry.get_sample_value("keel_shard_queries_total", {"shard": f"shard.{n}"}) or 0
        for n in range(3)
    )


def cache_results(client: TestClient) -> dict[str, float]:
    registry = client.app[METRICS].registry
    return {
        r: registry.get_sample_value("keel_cache_requests_total", {"result": r}) or 0
        for r in ("hit", "miss", "bypass", "error")
    }


async def read(client: TestClient, item_id: str, **headers: str) -> tuple[int, str, Any]:
    response = await client.get(f"/api/items/{item_id}", headers=headers)
    body = await response.json() if response.status != 304 else None
    return response.status, response.headers.get("Cache-Status", ""), body


async def test_a_read_misses_then_hits(cached: TestClient) -> None:
    created = await (await cached.post("/api/items", json=LAMP)).json()
    status, cache_status, body = await read(cached, created["id"])
    assert (status, cache_status, body) == (200, "keel; fwd=miss", created)
    before = shard_queries(cached)
    status, cache_status, body = await read(cached, created["id"])
    assert (status, cache_status, body) == (200, "keel; hit", created)
    assert shard_queries(cached) == before  # answered without the shard
    assert cache_results(cached) == {"hit": 1, "miss": 1, "bypass": 0, "error": 0}


async def test_a_hit_still_answers_if_none_match_with_304(cached: TestClient) -> None:
    created = await (await cached.post("/api/items", json=LAMP)).json()
    await read(cached, created["id"])
    response = await cached.get(f"/api/items/{created['id']}", headers={"If-None-Match": '"1"'})
    assert response.status == 304
    assert response.headers["ETag"] == '"1"'
    assert response.headers["Cache-Status"] == "keel; hit"


async def test_writes_and_deletes_invalidate_before_answering(cached: TestClient) -> None:
    created = await (await cached.post("/api/items", json=LAMP)).json()
    item_id = created["id"]
    for version in range(2, 6):
        await read(cached, item_id)  # cached
        put = await cached.put(f"/api/items/{item_id}", json={**LAMP, "price": version})
        assert put.status == 200
        status, cache_status, body = await read(cached, item_id)
        assert (status, cache_status) == (200, "keel; fwd=miss")
        assert (body["version"], body["price"]) == (version, version)
    assert (await cached.delete(f"/api/items/{item_id}")).status == 204
    status, cache_status, _ = await read(cached, item_id)
    assert (status, cache_status) == (404, "keel; fwd=miss")


async def test_a_not_found_is_cached_and_a_create_invalidates_it(cached: TestClient) -> None:
    assert (await read(cached, "widget-9"))[:2] == (404, "keel; fwd=miss")
    status, cache_status, body = await read(cached, "widget-9")
    assert (status, cache_status) == (404, "keel; hit")
    assert body["error"]["code"] == "not_found"
    assert (await cached.put("/api/items/widget-9", json=LAMP)).status == 201
    status, cache_status, body = await read(cached, "widget-9")
    assert (status, cache_status, body["version"]) == (200, "keel; fwd=miss", 1)


async def test_fifty_concurrent_misses_cost_one_shard_query(cached: TestClient) -> None:
    created = await (await cached.post("/api/items", json=LAMP)).json()
    await cached.app[CACHE].delete(f"item:{created['id']}")
    before = shard_queries(cached)
    answers = await asyncio.gather(*(read(cached, created["id"]) for _ in range(50)))
    assert shard_queries(cached) - before == 1
    assert all(status == 200 and body == created for status, _, body in answers)


async def test_sighup_reload_changes_the_ttls(cached: TestClient, make_config: Any) -> None:
    new = make_config("[cache]\nttl = 7.0\nnegative_ttl = 1.0\n", PLUGINS__ENABLED=CACHED)
    changes = apply_reload(cached.app, new)
    assert "cache.ttl: 60.0 -> 7.0" in changes
    assert "cache.negative_ttl: 5.0 -> 1.0" in changes
    assert cached.app[CACHE].times.ttl == 7.0
