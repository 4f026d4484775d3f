"""The Python client (`app.websocket.client`) against real instances: its reconnect loop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from app.websocket.client import KeelError, KeelSocket, Message, Reset
from app.websocket.redis_history import PUBLISH_SCRIPT
from tests.support.polling import eventually
from tests.support.redis import open_batcher
from tests.websocket.conftest import WITH_REDIS, service_of

CHANNEL = "chat.client"


@pytest.fixture
def two_instances(start_app, redis_url: str, redis_prefix: str) -> Any:
    async def start(**env: str) -> tuple[TestClient, TestClient]:
        settings = {
            "REDIS__URL": redis_url,
            "REDIS__KEY_PREFIX": redis_prefix,
            "WEBSOCKET__HISTORY_SIZE": "100",
            **env,
        }
        return await start_app(WITH_REDIS, **settings), await start_app(WITH_REDIS, **settings)

    return start


def url(client: TestClient) -> str:
    return str(client.make_url("/ws"))


async def take(socket: KeelSocket, count: int, timeout: float = 5.0) -> list[Any]:
    events: list[Any] = []
    async with asyncio.timeout(timeout):
        async for event in socket:
            events.append(event)
            if len(events) == count:
                break
    return events


async def nothing_more(socket: KeelSocket, within: float = 0.2) -> None:
    with pytest.raises(TimeoutError):
        await take(socket, 1, timeout=within)


@pytest.fixture
async def sockets() -> AsyncIterator[list[KeelSocket]]:
    """Sockets a test opened, closed after it."""
    opened: list[KeelSocket] = []
    yield opened
    for socket in opened:
        await socket.close()


async def open_socket(sockets: list[KeelSocket], *urls: str) -> KeelSocket:
    socket = KeelSocket(list(urls), min_delay=0.05, max_delay=0.2)
    sockets.append(await socket.__aenter__())
    return socket


async def test_it_reconnects_elsewhere_and_misses_nothing(two_instances, sockets) -> None:
    a, b = await two_instances()
    socket = await open_socket(sockets, url(a), url(b))
    await socket.subscribe(CHANNEL)
    await socket.publish(CHANNEL, "hello")
    assert await take(socket, 1) == [Message(CHANNEL, "hello", 1, socket_epoch(socket))]

    # a shuts down: its clients are closed with 1001 and new handshakes get 503.
    closing = asyncio.create_task(service_of(a).close_all())
    await eventually(lambda: not socket.connected, what="the client to notice")
    for n in range(20):
        await service_of(b).publish(CHANNEL, n)
    await closing
    events = await take(socket, 20)
    assert [e.data for e in events] == list(range(20))  # replayed by b, in order, once
    assert [e.offset for e in events] == list(range(2, 22))
    assert socket.connects == 2
    assert socket.connected
    await service_of(b).publish(CHANNEL, "live")
    assert [e.data for e in await take(socket, 1)] == ["live"]
    await nothing_more(socket)


def socket_epoch(socket: KeelSocket) -> str | None:
    state = socket._channels[CHANNEL]
    return state.position.epoch if state.position else None


async def test_what_the_history_no_longer_holds_is_a_reset(two_instances, sockets) -> None:
    a, b = await two_instances(WEBSOCKET__HISTORY_SIZE="5")
    socket = await open_socket(sockets, url(a), url(b))
    await socket.subscribe(CHANNEL)
    closing = asyncio.create_task(service_of(a).close_all())
    await eventually(lambda: not socket.connected, what="the client to notice")
    for n in range(10):  # more than the 5 kept
        await service_of(b).publish(CHANNEL, n)
    await closing
    assert await take(socket, 1) == [Reset(CHANNEL)]
    await service_of(b).publish(CHANNEL, "after")
    (event,) = await take(socket, 1)
    assert (event.data, event.offset) == ("after", 11)


async def test_a_gap_in_the_offsets_is_filled_from_the_history(
    two_instances, sockets, redis_url: str, redis_prefix: str
) -> None:
    a, _ = await two_instances()
    socket = await open_socket(sockets, url(a))
    await socket.subscribe(CHANNEL)
    await service_of(a).publish(CHANNEL, "one")
    await take(socket, 1)
    # A message that reaches the history but not the instance (its pub/sub message is
    # lost: published where nobody listens), as when the instance's link to Redis drops.
    history = f"{redis_prefix}ws:history:{CHANNEL}"
    async with open_batcher(redis_url) as batch:
        await batch.evalsha(
            PUBLISH_SCRIPT.sha,
            PUBLISH_SCRIPT.source,
            [history + ":meta", history, f"{redis_prefix}nobody"],
            ["test", "300000", "100", b'{"op":"message","channel":"chat.client","data":"lost"'],
        )
    await service_of(a).publish(CHANNEL, "three")
    events = await take(socket, 2)
    assert [(e.data, e.offset) for e in events] == [("lost", 2), ("three", 3)]
    await nothing_more(socket)


async def test_without_history_every_reconnect_is_a_reset(start_app, sockets) -> None:
    client = await start_app()  # history off
    socket = await open_socket(sockets, url(client))
    await socket.subscribe(CHANNEL)
    await service_of(client).publish(CHANNEL, "plain")
    assert await take(socket, 1) == [Message(CHANNEL, "plain")]
    for connection in list(service_of(client).hub.connections):
        connection.close(1011, "testing")  # closed, not shutting down: it may come back
    assert await take(socket, 1) == [Reset(CHANNEL)]
    assert socket.connects == 2


async def test_refusals_raise_with_the_servers_code(start_app, sockets) -> None:
    client = await start_app(WEBSOCKET__PRIVATE_CHANNELS='["ops.*"]')
    socket = await open_socket(sockets, url(client))
    with pytest.raises(KeelError) as refused:
        await socket.publish("items", {"no": 1})
    assert refused.value.code == "forbidden"
    with pytest.raises(KeelError) as refused:
        await socket.subscribe("ops.x")
    assert refused.value.code == "forbidden"
    await socket.subscribe(CHANNEL)
    assert await socket.presence(CHANNEL) == 1
    await socket.unsubscribe(CHANNEL)
    assert await socket.presence(CHANNEL) == 0


async def test_closing_ends_the_iteration(start_app) -> None:
    client = await start_app()
    async with KeelSocket(url(client)) as socket:
        await socket.subscribe(CHANNEL)
        reader = asyncio.create_task(take(socket, 5))
        await asyncio.sleep(0)
    assert await asyncio.wait_for(reader, 2) == []
    assert not socket.connected
