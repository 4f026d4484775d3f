"""A PostgreSQL shard that stops answering fails only its own keys, fast, and comes back.

Three PostgreSQL shards; `shard.1` is reached through a `TcpProxy` the test
cuts: "refuse" (connections refused: the driver learns at once), "blackhole"
(connections accepted, nothing ever answers: only a timeout tells) and
"blackhole" with the open connections kept but silent (a host gone without a
reset). Timeouts are short here (`query_timeout` 0.5 s, `retry_after` 1 s) and
the health loop ticks every 0.1 s.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import pytest
from aiohttp.test_utils import TestClient

from app.sharding import SHARDS
from tests.support.apps import StartApp
from tests.support.polling import eventually
from tests.support.tcp_proxy import TcpProxy

DOWN = 1  # the shard behind the proxy
DOWN_NAME = f"shard.{DOWN}"
LAMP = {"name": "lamp", "price": 1.5}
FAST = 0.2  # seconds: a request to a shard known to be down must not wait on it
OUTAGE_SETTINGS = {
    "SHARDING__QUERY_TIMEOUT": "0.5",
    "SHARDING__CONNECT_TIMEOUT": "0.5",
    "SHARDING__RETRY_AFTER": "1",
}


@dataclass
class Shards:
    dsns: list[str]  # as the app is configured: shard.1 through the proxy
    proxy: TcpProxy


def through(proxy: TcpProxy, dsn: str) -> str:
    parts = urlsplit(dsn)
    user = parts.netloc.rpartition("@")[0]
    return urlunsplit(parts._replace(netloc=f"{user}@{proxy.address}" if user else proxy.address))


# Requested before `start_app`, so the proxy and the databases outlive the app.
@pytest.fixture
async def shards(pg_databases: Callable[[], Awaitable[str]]) -> AsyncIterator[Shards]:
    dsns = [await pg_databases() for _ in range(3)]
    target = urlsplit(dsns[DOWN])
    async with TcpProxy(target.hostname or "127.0.0.1", target.port or 5432) as proxy:
        dsns[DOWN] = through(proxy, dsns[DOWN])
        yield Shards(dsns, proxy)


@pytest.fixture
async def client(shards: Shards, start_app: StartApp) -> TestClient:
    return await start_app(shards.dsns, **OUTAGE_SETTINGS)


def keys_on(client: TestClient, shard: int, count: int, prefix: str = "k") -> list[str]:
    placement = client.app[SHARDS].placement
    candidates = (f"{prefix}{n}" for n in range(100_000))
    keys = [key for key in candidates if placement.shard_of(key) == shard]
    return keys[:count]


async def timed(request: Awaitable[Any]) -> tuple[Any, float]:
    started = time.monotonic()
    response = await request
    await response.read()
    return response, time.monotonic() - started


async def assert_unavailable(response: Any) -> None:
    assert response.status == 503, await response.text()
    body = await response.json()
    assert body["error"]["code"] == "unavailable"
    assert body["error"]["details"] == {"shard": DOWN_NAME}
    assert DOWN_NAME in body["error"]["message"]
    assert int(response.headers["Retry-After"]) >= 1


async def readiness(client: TestClient) -> tuple[int, dict[str, Any]]:
    response = await client.get("/readyz")
    return response.status, await response.json()


@pytest.mark.parametrize(
    ("mode", "drop_open"),
    [
        pytest.param("refuse", True, id="refuse"),
        pytest.param("blackhole", True, id="blackhole"),
        # Open connections go silent too, as when a host vanishes without a reset.
        pytest.param("blackhole", False, id="blackhole-silent-connections"),
    ],
)
async def test_a_cut_shard_fails_only_its_keys_fast_then_recovers(
    client: TestClient, shards: Shards, mode: Literal["refuse", "blackhole"], drop_open: bool
) -> None:
    (down_key, down_new) = keys_on(client, DOWN, 2)
    up_keys = keys_on(client, 0, 2) + keys_on(client, 2, 2)
    for key in [down_key, *up_keys[::2]]:
        assert (await client.put(f"/api/items/{key}", json=LAMP)).status == 201
    assert (await client.get("/api/items")).status == 200

    await shards.proxy.cut(mode, drop_open=drop_open)

    first, first_took = await timed(client.get(f"/api/items/{down_key}"))
    await assert_unavailable(first)
    assert first_took < 3, "a shard that does not answer must time out, not hang"
    # Now the shard is known to be down: the next requests fail without waiting on it.
    for method, path in [
        ("GET", f"/api/items/{down_key}"),
        ("PUT", f"/api/items/{down_key}"),
        ("PUT", f"/api/items/{down_new}"),
        ("DELETE", f"/api/items/{down_key}"),
        ("GET", "/api/items"),
    ]:
        response, took = await timed(client.request(method, path, json=LAMP))
        await assert_unavailable(response)
        assert took < FAST, f"{method} {path} took {took:.3f}s"

    # Every other shard's keys still work, at full speed.
    for key in up_keys[::2]:
        response, took = await timed(client.get(f"/api/items/{key}"))
        assert response.status == 200
        assert took < FAST
    for key in up_keys[1::2]:
        assert (await client.put(f"/api/items/{key}", json=LAMP)).status == 201
    assert (await client.delete(f"/api/items/{up_keys[1]}")).status == 204
    creates = [await client.post("/api/items", json=LAMP) for _ in range(12)]
    assert {r.status for r in creates} <= {201, 503}
    placement = client.app[SHARDS].placement
    created = [(await r.json())["id"] for r in creates if r.status == 201]
    assert created, "creates landing on live shards must succeed"
    assert all(placement.shard_of(item_id) != DOWN for item_id in created)
    for r in creates:
        if r.status == 503:
            await assert_unavailable(r)

    status, body = await readiness(client)
    assert status == 200
    assert body["status"] == "degraded"
    assert body["plugins"]["sharding"]["status"] == "degraded"
    detail = body["plugins"]["sharding"]["detail"]
    assert f"{DOWN_NAME}: down (" in detail  # every shard is listed, with its health
    assert "shard.0: ok" in detail

    await shards.proxy.restore()

    async def recovered() -> bool:
        response = await client.get(f"/api/items/{down_key}")
        return response.status == 200

    await eventually(recovered)
    assert (await client.put(f"/api/items/{down_new}", json=LAMP)).status == 201
    response = await client.get("/api/items", params={"limit": "200"})
    assert response.status == 200
    listed = {item["id"] for item in (await response.json())["items"]}
    assert {down_key, down_new, *up_keys[2:], *created} <= listed

    async def ready() -> bool:
        return (await readiness(client))[1]["status"] == "ready"

    await eventually(ready)


async def test_while_a_shard_times_out_the_others_answer_at_full_speed(
    client: TestClient, shards: Shards
) -> None:
    (down_key,) = keys_on(client, DOWN, 1)
    up_key = keys_on(client, 2, 1)[0]
    assert (await client.put(f"/api/items/{up_key}", json=LAMP)).status == 201
    await shards.proxy.cut("blackhole")
    # The first requests to the silent shard wait for the query timeout; a
    # request for another shard sent meanwhile must not wait with them.
    slow = asyncio.ensure_future(timed(client.get(f"/api/items/{down_key}")))
    await asyncio.sleep(0.05)
    response, took = await timed(client.get(f"/api/items/{up_key}"))
    assert response.status == 200
    assert took < FAST
    down_response, _ = await slow
    await assert_unavailable(down_response)

    await shards.proxy.restore()

    async def recovered() -> bool:
        return (await client.get(f"/api/items/{down_key}")).status == 404

    await eventually(recovered)


async def test_a_shard_out_of_reach_at_startup_starts_down_and_joins_later(
    shards: Shards, start_app: StartApp
) -> None:
    await shards.proxy.cut("refuse")
    client = await start_app(shards.dsns, **OUTAGE_SETTINGS)
    status, body = await readiness(client)
    assert status == 200
    assert body["status"] == "degraded"
    assert DOWN_NAME in body["plugins"]["sharding"]["detail"]
    (down_key,) = keys_on(client, DOWN, 1)
    (up_key,) = keys_on(client, 0, 1)
    await assert_unavailable(await client.put(f"/api/items/{down_key}", json=LAMP))
    assert (await client.put(f"/api/items/{up_key}", json=LAMP)).status == 201
    await assert_unavailable(await client.get("/api/items"))

    await shards.proxy.restore()

    async def joined() -> bool:  # connected and migrated by the health loop
        response = await client.put(f"/api/items/{down_key}", json=LAMP)
        return response.status == 201

    await eventually(joined)
    response = await client.get("/api/items")
    assert response.status == 200
    assert [item["id"] for item in (await response.json())["items"]] == sorted([down_key, up_key])


async def test_a_request_on_a_connection_gone_silent_still_fails_within_the_timeout(
    shards: Shards, start_app: StartApp
) -> None:
    # A host that vanishes without a reset leaves the pool's open connections
    # established but silent. No health pings here, so the request itself
    # meets the silent connection: it must still fail after query_timeout.
    client = await start_app(shards.dsns, **{**OUTAGE_SETTINGS, "SHARDING__HEALTH_INTERVAL": "60"})
    (down_key,) = keys_on(client, DOWN, 1)
    assert (await client.put(f"/api/items/{down_key}", json=LAMP)).status == 201
    await shards.proxy.cut("blackhole", drop_open=False)
    try:
        response, took = await asyncio.wait_for(timed(client.get(f"/api/items/{down_key}")), 5)
    except TimeoutError:
        pytest.fail("a request to a silent shard was still waiting after 5 s (query_timeout 0.5 s)")
    finally:
        await shards.proxy.restore()  # frees whatever still waits on the silent connection
    await assert_unavailable(response)
    assert took < 2


async def test_the_health_loop_stops_when_cancelled_even_as_a_ping_completes(
    client: TestClient,
) -> None:
    # Shutdown cancels the health loop and waits for it. If that cancellation
    # lands in the instant a ping completes, a Python 3.11 `asyncio.wait_for`
    # returns the ping's result instead of raising it, the loop runs on, and
    # shutdown waits forever. Here the cancellation is made to land just then.
    (health,) = [t for t in asyncio.all_tasks() if t.get_name() == "keel.sharding.health"]
    backend = client.app[SHARDS].shards[0].backend
    real_ping = backend.ping

    async def ping_then_stop() -> None:
        await real_ping()
        asyncio.get_running_loop().call_soon(health.cancel)  # runs as this ping completes

    backend.ping = ping_then_stop  # type: ignore[method-assign]
    try:
        done, _ = await asyncio.wait({health}, timeout=2)
    finally:
        backend.ping = real_ping  # type: ignore[method-assign]
    assert health in done, "the health loop lost its cancellation and runs on: shutdown would hang"


async def test_a_shard_breaker_open_for_a_minute_lets_calls_through_once_the_shard_answers(
    shards: Shards, start_app: StartApp
) -> None:
    """The health check is the breaker's probe: the shard is served again within a
    check of its return, not when the breaker's open time is over."""
    settings = {
        **OUTAGE_SETTINGS,
        "PLUGINS__ENABLED": '["metrics", "breakers", "sharding"]',
        "SHARDING__RETRY_AFTER": "0.05",  # let failed calls reach the breaker
        "BREAKERS__MINIMUM_CALLS": "2",
        "BREAKERS__OPEN_SECONDS": "60",
    }
    client = await start_app(shards.dsns, **settings)
    (key,) = keys_on(client, DOWN, 1)
    assert (await client.put(f"/api/items/{key}", json=LAMP)).status == 201
    breaker = client.app[SHARDS].shards[DOWN].breaker
    assert breaker is not None

    await shards.proxy.cut("refuse")

    async def opened() -> bool:
        await client.get(f"/api/items/{key}")
        return breaker.state == "open"

    await eventually(opened, "the shard's breaker to open")
    assert breaker.retry_after() > 30

    await shards.proxy.restore()

    async def served() -> bool:
        return (await client.get(f"/api/items/{key}")).status == 200

    await eventually(served, "the shard to be served again", timeout=15)
    assert breaker.state in ("half_open", "closed")
