"""A Redis outage (a private redis-server paused, then resumed): local delivery never
stops, cross-instance delivery comes back by itself with the subscriptions."""

from __future__ import annotations

import asyncio
import time

from aiohttp.test_utils import TestClient

from app.breakers import BREAKERS
from app.websocket.redis_bus import LISTEN_DEADLINE, RedisBus
from tests.support.apps import StartApp
from tests.support.polling import eventually
from tests.support.private_redis import PrivateRedis
from tests.websocket.conftest import Peer, service_of

PLUGINS = ("metrics", "redis", "breakers", "websocket")


def bus_of(client: TestClient) -> RedisBus:
    bus = service_of(client).bus
    assert isinstance(bus, RedisBus)
    return bus


async def readiness(client: TestClient) -> str:
    body = await (await client.get("/readyz")).json()
    return str(body["plugins"]["websocket"]["status"])


async def test_local_delivery_never_stops_and_cross_instance_delivery_recovers(
    start_app: StartApp, connect, private_redis: PrivateRedis
) -> None:
    settings = {
        "REDIS__URL": private_redis.url,
        # A breaker open for a minute, and no heartbeat to probe Redis in time: the
        # bus's own reconnect is the breaker's probe, within half a second of Redis
        # answering again, not when the minute is over.
        "REDIS__HEARTBEAT_INTERVAL": "60",
        "REDIS__HEARTBEAT_TTL": "120",
        "BREAKERS__REDIS__MINIMUM_CALLS": "2",
        "BREAKERS__REDIS__OPEN_SECONDS": "60",
        "BREAKERS__REDIS__HALF_OPEN_CALLS": "1",
    }
    a = await start_app(PLUGINS, **settings)
    b = await start_app(PLUGINS, **settings)
    local, publisher, remote = await connect(a), await connect(a), await connect(b)
    await local.subscribe("chat.x")
    await remote.subscribe("chat.x")
    await publisher.ok({"op": "publish", "channel": "chat.x", "data": "before"})
    assert (await local.next())["data"] == "before"
    assert (await remote.next())["data"] == "before"

    private_redis.pause()
    # Long enough for both listeners to give their connection up.
    outage_ends = time.monotonic() + LISTEN_DEADLINE + 1
    n = 0
    while time.monotonic() < outage_ends:
        started = time.monotonic()
        await publisher.send({"op": "publish", "channel": "chat.x", "data": n})
        assert await local.next(timeout=0.5) == {"op": "message", "channel": "chat.x", "data": n}
        assert time.monotonic() - started < 0.1, "local delivery waited for Redis"
        assert await publisher.next(timeout=1) == {"op": "ok", "ref": None}
        n += 1
        await asyncio.sleep(0.1)
    assert await readiness(a) == "degraded"
    assert not bus_of(a).healthy
    assert not bus_of(b).healthy
    assert "unreachable" in bus_of(b).problem

    connects_before = bus_of(b).connects
    private_redis.resume()
    # Keep publishing on a until b's subscriber gets one: b reconnects and
    # resubscribes by itself. (What a published during the outage is lost to b:
    # pub/sub keeps nothing.)
    deadline = time.monotonic() + 15
    recovered = False
    while not recovered:
        assert time.monotonic() < deadline, "cross-instance delivery did not recover"
        await service_of(a).publish("chat.x", f"after {n}")
        assert (await local.next())["data"] == f"after {n}"
        try:
            while True:  # anything a's Redis delivered late comes first
                if (await remote.next(timeout=0.2))["data"] == f"after {n}":
                    recovered = True
                    break
        except TimeoutError:
            pass
        n += 1
    assert bus_of(b).connects > connects_before  # a new connection, channels resubscribed
    assert bus_of(b).subscribed() == {"chat.x"}

    # Both ways, reliably again, once a has come back too (b's recovery above
    # says nothing of a's own listener, which reconnects on its own schedule).
    await eventually(
        lambda: all(
            bus_of(c).healthy and c.app[BREAKERS].get("redis").state == "closed" for c in (a, b)
        ),
        what="healthy buses and closed redis breakers",
    )
    await remote.send({"op": "publish", "channel": "chat.x", "data": "from b"})
    assert (await remote.next())["data"] == "from b"
    assert (await remote.next())["op"] == "ok"
    assert (await local.next())["data"] == "from b"
    assert await readiness(a) == "ok"
    assert await readiness(b) == "ok"


async def test_an_instance_that_starts_during_an_outage_serves_locally_then_joins(
    start_app: StartApp, connect, private_redis: PrivateRedis
) -> None:
    private_redis.pause()
    settings = {"REDIS__URL": private_redis.url, "REDIS__RETRY_AFTER": "0.2"}
    late = await start_app(("metrics", "redis", "websocket"), **settings)
    peer: Peer = await connect(late)
    await peer.subscribe("chat.x")  # does not wait for Redis
    await service_of(late).publish("chat.x", "local")
    assert (await peer.next())["data"] == "local"
    assert await readiness(late) == "degraded"

    private_redis.resume()
    await eventually(lambda: bus_of(late).healthy, what="the bus to connect", timeout=10)
    assert bus_of(late).subscribed() == {"chat.x"}
