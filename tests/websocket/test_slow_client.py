"""A client that stops reading is closed with 1013; the others never notice."""

from __future__ import annotations

import asyncio

import aiohttp
import orjson

from app.metrics import METRICS
from tests.support.apps import StartApp
from tests.support.polling import eventually
from tests.websocket.conftest import Peer, service_of

SEND_QUEUE = 8
PAYLOAD = "x" * 60_000  # big frames fill the kernel's socket buffers quickly


async def read_all(peer: Peer, into: list[int]) -> None:
    async for message in peer.ws:
        if message.type is aiohttp.WSMsgType.TEXT:
            into.append(orjson.loads(message.data)["data"]["n"])


async def test_a_slow_consumer_is_closed_with_1013_while_fast_ones_keep_receiving(
    start_app: StartApp, connect
) -> None:
    client = await start_app(WEBSOCKET__SEND_QUEUE=str(SEND_QUEUE))
    service = service_of(client)
    fast = [await connect(client) for _ in range(3)]
    slow: Peer = await connect(client)
    for peer in (*fast, slow):
        await peer.subscribe("chat.x")
    received: list[list[int]] = [[] for _ in fast]
    readers = [asyncio.create_task(read_all(p, r)) for p, r in zip(fast, received, strict=True)]
    # From here on `slow` reads nothing: its socket fills, then its queue.

    most_queued = 0
    sent = 0
    closed_after = None
    while closed_after is None or sent < closed_after + 50:
        await service.publish("chat.x", {"n": sent, "pad": PAYLOAD})
        sent += 1
        most_queued = max(most_queued, service.state()["queued_frames"])
        if closed_after is None and service.slow_closes:
            closed_after = sent
        assert sent < 2000, "the slow client was never closed"
        await asyncio.sleep(0.0005)  # the fast clients read as they would in real life

    # Memory stayed bounded: never more than send_queue frames waited for the slow one.
    assert most_queued <= SEND_QUEUE
    # The slow client finds, after what its socket held, the close frame: 1013.
    assert await slow.close_code() == 1013
    await eventually(lambda: len(service.hub.connections) == 3, what="the slow handler to end")

    await eventually(
        lambda: all(len(r) == sent for r in received), what="the fast clients to read all"
    )
    for r in received:
        assert r == list(range(sent))  # every message, in order
    assert client.app[METRICS].registry.get_sample_value("keel_ws_slow_client_closes_total") == 1
    for peer in fast:
        await peer.ws.close()
    await asyncio.gather(*readers)
