"""Two instances sharing the machine's Redis: channels span both, traffic goes only where wanted."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from app.websocket.redis_bus import RedisBus
from tests.support.apps import StartApp
from tests.websocket.conftest import service_of
from tests.websocket.test_bus_contract import numsub, numsub_becomes

WITH_REDIS = ("metrics", "redis", "breakers", "websocket")


@pytest.fixture
def start_instance(start_app: StartApp, redis_url: str, redis_prefix: str) -> Any:
    async def start(plugins: tuple[str, ...] = WITH_REDIS) -> TestClient:
        return await start_app(plugins, REDIS__URL=redis_url, REDIS__KEY_PREFIX=redis_prefix)

    return start


def bus_of(client: TestClient) -> RedisBus:
    bus = service_of(client).bus
    assert isinstance(bus, RedisBus)
    return bus


async def test_a_publish_on_one_instance_reaches_subscribers_on_the_other(
    start_instance, connect
) -> None:
    a, b = await start_instance(), await start_instance()
    on_a, on_b = await connect(a), await connect(b)
    await on_a.subscribe("chat.room")
    await on_b.subscribe("chat.room")

    await on_b.send({"op": "publish", "channel": "chat.room", "data": "from b", "ref": 1})
    message = {"op": "message", "channel": "chat.room", "data": "from b"}
    assert await on_b.next() == message  # local, before the ok
    assert await on_b.next() == {"op": "ok", "ref": 1}
    assert await on_a.next() == message

    await service_of(a).publish("chat.room", {"from": "a's server code"})
    assert (await on_a.next())["data"] == {"from": "a's server code"}
    assert (await on_b.next())["data"] == {"from": "a's server code"}
    await on_a.silent(0.1)  # each message exactly once
    await on_b.silent(0.05)

    ready = await (await a.get("/readyz")).json()
    assert ready["plugins"]["websocket"] == {"status": "ok", "detail": "bus: redis"}


async def test_an_instance_with_no_subscribers_for_a_channel_receives_nothing_for_it(
    start_instance, connect, redis_url: str, redis_prefix: str
) -> None:
    a, b = await start_instance(), await start_instance()
    channel_key = f"{redis_prefix}ws:chat.a"
    listener = await connect(a)
    await listener.subscribe("chat.a")
    assert await numsub(redis_url, channel_key) == 1  # a's one connection, not b's

    publisher = await connect(a)
    for n in range(10):
        await publisher.ok({"op": "publish", "channel": "chat.a", "data": n})
    for n in range(10):
        assert (await listener.next())["data"] == n
    assert bus_of(b).received == 0
    assert service_of(b).state()["bus"]["redis_channels"] == 0

    # b subscribes on its first subscriber only, once however many join...
    b_peers = [await connect(b) for _ in range(3)]
    for peer in b_peers:
        await peer.subscribe("chat.a")
    assert await numsub(redis_url, channel_key) == 2
    await publisher.ok({"op": "publish", "channel": "chat.a", "data": "both"})
    for peer in (listener, *b_peers):
        assert (await peer.next())["data"] == "both"
    assert bus_of(b).received == 1  # one message from Redis for three sockets

    # ...and unsubscribes after its last one leaves.
    await b_peers[0].ok({"op": "unsubscribe", "channel": "chat.a"})
    for peer in b_peers[1:]:
        await peer.ws.close()
    await numsub_becomes(redis_url, channel_key, 1)
    await publisher.ok({"op": "publish", "channel": "chat.a", "data": "a only"})
    assert (await listener.next())["data"] == "a only"
    await asyncio.sleep(0.05)
    assert bus_of(b).received == 1  # nothing more for b


async def test_item_changes_reach_subscribers_on_every_instance(start_instance, connect) -> None:
    writer = await start_instance(("metrics", "redis", "sharding", "websocket"))
    reader = await start_instance()
    peer = await connect(reader)
    await peer.subscribe("items")
    response = await writer.post("/api/items", json={"name": "kettle", "price": 20})
    created = await response.json()
    assert await peer.next() == {
        "op": "message",
        "channel": "items",
        "data": {"event": "created", "item": created},
    }
