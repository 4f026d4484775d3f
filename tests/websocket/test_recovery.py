"""Recovery through the real app, in process and over Redis: offsets, `since`, replays."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from app.websocket.position import Position
from app.websocket.service import WebSocketService
from tests.support.polling import eventually
from tests.websocket.conftest import Peer, resubscribe, service_of

CHANNEL = "chat.room"


async def pair(start_recovering, backend: str) -> tuple[TestClient, TestClient]:
    """Two instances sharing one history (Redis), or the one instance twice (memory)."""
    first = await start_recovering()
    return first, (first if backend == "memory" else await start_recovering())


async def publish(service: WebSocketService, *values: Any) -> None:
    for value in values:
        await service.publish(CHANNEL, value)


def held(service: WebSocketService) -> int:
    """Messages held back for subscriptions whose replay is being read."""
    return sum(len(waiting) for waiting in service.hub._held.get(CHANNEL, {}).values())


async def test_messages_carry_offsets_and_the_subscribe_ok_the_position(
    start_recovering, connect
) -> None:
    client = await start_recovering()
    peer = await connect(client)
    messages, ok = await resubscribe(peer, CHANNEL, ref=1)
    assert messages == []
    assert ok["offset"] == 0
    assert set(ok) == {"op", "ref", "offset", "epoch"}
    epoch = ok["epoch"]

    await peer.send({"op": "publish", "channel": CHANNEL, "data": "mine", "ref": "p"})
    assert await peer.next() == {
        "op": "message",
        "channel": CHANNEL,
        "data": "mine",
        "offset": 1,
        "epoch": epoch,
    }
    assert await peer.next() == {"op": "ok", "ref": "p"}  # after its own message
    await publish(service_of(client), "a", "b")
    assert [(await peer.next())["offset"] for _ in range(2)] == [2, 3]

    # A second plain subscribe to the same channel changes nothing.
    assert await peer.op({"op": "subscribe", "channel": CHANNEL}) == {"op": "ok", "ref": None}
    late = await connect(client)
    assert (await resubscribe(late, CHANNEL))[1]["offset"] == 3


async def test_reconnecting_with_since_replays_exactly_the_missed_then_recovered(
    start_recovering, connect, backend
) -> None:
    a, b = await pair(start_recovering, backend)
    peer = await connect(a)
    _, ok = await resubscribe(peer, CHANNEL)
    await publish(service_of(a), "seen 1", "seen 2")
    last = [await peer.next() for _ in range(2)][-1]
    await peer.ws.close()

    missed = [f"missed {n}" for n in range(25)]
    await publish(service_of(a), *missed)

    again = await connect(b)  # elsewhere, with Redis
    since = {"offset": last["offset"], "epoch": last["epoch"]}
    messages, ok = await resubscribe(again, CHANNEL, since, ref="r")
    assert [m["data"] for m in messages] == missed
    assert [m["offset"] for m in messages] == list(range(3, 28))
    assert ok == {"op": "ok", "ref": "r", "recovered": True, "offset": 27, "epoch": last["epoch"]}
    await publish(service_of(a), "live")
    assert await again.next() == {
        "op": "message",
        "channel": CHANNEL,
        "data": "live",
        "offset": 28,
        "epoch": last["epoch"],
    }
    await again.silent(0.1)


async def test_what_cannot_be_recovered_is_answered_recovered_false(
    start_recovering, connect, backend
) -> None:
    a, b = await pair(start_recovering, backend)
    service = service_of(a)
    service_b = service_of(b)
    peer = await connect(b)
    _, ok = await resubscribe(peer, CHANNEL)
    epoch = ok["epoch"]
    await publish(service, *range(150))  # the history keeps the last 100: 51..150
    for _ in range(150):
        await peer.next()
    cases = [
        ({"offset": 49, "epoch": epoch}, "50 fell out of the history"),
        ({"offset": 151, "epoch": epoch}, "beyond the latest"),
        ({"offset": 120, "epoch": "an-old-epoch"}, "another epoch"),
    ]
    for since, why in cases:
        messages, ok = await resubscribe(peer, CHANNEL, since)
        assert messages == [], why
        assert ok == {"op": "ok", "ref": None, "recovered": False, "offset": 150, "epoch": epoch}
    messages, ok = await resubscribe(peer, CHANNEL, {"offset": 50, "epoch": epoch})
    assert [m["data"] for m in messages] == list(range(50, 150))
    assert ok["recovered"] is True
    assert service_b.recoveries.as_dict() == {"recovered": 1, "reset": 3}

    # Still subscribed, once, after all those resubscribes.
    await publish(service, "after")
    assert (await peer.next())["offset"] == 151
    await peer.silent(0.1)


@pytest.mark.parametrize(
    ("since", "field"),
    [
        ({"offset": -1, "epoch": "e"}, '"since.offset"'),
        ({"offset": "7", "epoch": "e"}, '"since.offset"'),
        ({"offset": 7}, '"since.epoch"'),
        ([7, "e"], '"since"'),
    ],
)
async def test_a_bad_since_is_an_error_naming_the_field_and_the_connection_stays(
    start_recovering, connect, since, field
) -> None:
    peer = await connect(await start_recovering())
    reply = await peer.op({"op": "subscribe", "channel": CHANNEL, "since": since, "ref": 4})
    assert reply["op"] == "error"
    assert (reply["code"], reply["ref"]) == ("invalid", 4)
    assert reply["message"].startswith(field)
    assert await peer.op({"op": "ping"}) == {"op": "pong"}
    _, ok = await resubscribe(peer, CHANNEL)
    assert ok["offset"] == 0


async def test_a_publish_racing_the_replay_is_delivered_once(
    start_recovering, connect, backend, monkeypatch
) -> None:
    a, b = await pair(start_recovering, backend)
    publisher, service = service_of(a), service_of(b)
    peer = await connect(b)
    await resubscribe(peer, CHANNEL)
    await publish(publisher, 1, 2, 3)
    last = [await peer.next() for _ in range(3)][-1]
    await peer.ws.close()
    await publish(publisher, 4, 5, 6)

    assert service.history is not None
    read = service.history.read

    async def racing_read(channel: str, since: Position | None):
        # Published once the subscription is held and the bus has the channel: these are
        # both in the history read below and held for the connection.
        await publish(publisher, 7, 8)
        await eventually(lambda: held(service) == 2, what="7 and 8 to be held")
        replay = await read(channel, since)
        # Published after the history was read: only held.
        await publish(publisher, 9, 10)
        await eventually(lambda: held(service) == 4, what="9 and 10 to be held")
        return replay

    monkeypatch.setattr(service.history, "read", racing_read)
    again = await connect(b)
    since = {"offset": last["offset"], "epoch": last["epoch"]}
    messages, ok = await resubscribe(again, CHANNEL, since)
    # The replay (all the history held when read), the ok, then what came after.
    assert [m["data"] for m in messages] == [4, 5, 6, 7, 8]
    assert [m["offset"] for m in messages] == [4, 5, 6, 7, 8]
    assert (ok["recovered"], ok["offset"]) == (True, 8)
    assert [(await again.next())["offset"] for _ in range(2)] == [9, 10]
    monkeypatch.undo()
    await publish(publisher, 11)
    assert (await again.next())["data"] == 11
    await again.silent(0.1)


async def test_a_client_that_keeps_reconnecting_misses_nothing_and_sees_nothing_twice(
    start_recovering, connect, backend
) -> None:
    a, b = await pair(start_recovering, backend)
    publisher = service_of(a)
    total = 300

    async def publish_steadily() -> None:
        for n in range(total):
            await publisher.publish(CHANNEL, n)
            if n % 10 == 0:
                await asyncio.sleep(0.001)

    peer = await connect(b)
    _, ok = await resubscribe(peer, CHANNEL)
    since = {"offset": ok["offset"], "epoch": ok["epoch"]}
    received: list[int] = []
    publishing = asyncio.create_task(publish_steadily())
    reconnects = 0
    while len(received) < total:
        # Read a few, then drop the connection, while the publisher goes on.
        for _ in range(7):
            if len(received) == total:
                break
            message = await peer.next()
            received.append(message["data"])
            since = {"offset": message["offset"], "epoch": message["epoch"]}
        await peer.ws.close()
        peer = await connect(b if reconnects % 2 else a)
        reconnects += 1
        messages, ok = await resubscribe(peer, CHANNEL, since)
        assert ok["recovered"] is True
        received += [m["data"] for m in messages]
        if messages:
            since = {"offset": messages[-1]["offset"], "epoch": messages[-1]["epoch"]}
    await publishing
    assert received == list(range(total))
    assert reconnects > 10


async def test_resubscribing_while_subscribed_with_since_sends_from_there(
    start_recovering, connect
) -> None:
    client = await start_recovering()
    peer = await connect(client)
    _, ok = await resubscribe(peer, CHANNEL)
    await publish(service_of(client), "x", "y", "z")
    got = [await peer.next() for _ in range(3)]
    messages, ok = await resubscribe(peer, CHANNEL, {"offset": 1, "epoch": got[0]["epoch"]})
    assert [m["data"] for m in messages] == ["y", "z"]
    assert ok["recovered"] is True
    assert service_of(client).hub.channels() == {CHANNEL: 1}


async def test_recoveries_are_counted_and_histories_shown(start_recovering, connect) -> None:
    client = await start_recovering()
    peer = await connect(client)
    _, ok = await resubscribe(peer, CHANNEL)
    await publish(service_of(client), 1, 2)
    await resubscribe(peer, CHANNEL, {"offset": 0, "epoch": ok["epoch"]})
    await resubscribe(peer, CHANNEL, {"offset": 0, "epoch": "gone"})
    await resubscribe(peer, CHANNEL, {"offset": 1, "epoch": ok["epoch"]})
    metrics = await (await client.get("/metrics")).text()
    assert 'keel_ws_recoveries_total{result="recovered"} 2.0' in metrics
    assert 'keel_ws_recoveries_total{result="reset"} 1.0' in metrics
    history = service_of(client).state()["history"]
    assert history["size"] == 100
    assert history["channels"][CHANNEL] == {"offset": 2, "epoch": ok["epoch"], "messages": 2}


async def test_items_changes_carry_offsets_too(start_recovering, connect) -> None:
    client = await start_recovering(["sharding"])
    peer = await connect(client)
    _, ok = await resubscribe(peer, "items")
    created = await (await client.post("/api/items", json={"name": "kettle", "price": 2})).json()
    message = await peer.next()
    assert message == {
        "op": "message",
        "channel": "items",
        "data": {"event": "created", "item": created},
        "offset": ok["offset"] + 1,
        "epoch": ok["epoch"],
    }


async def test_without_history_since_is_answered_recovered_false(start_app, connect) -> None:
    client = await start_app()  # history_size = 0
    peer = await connect(client)
    reply = await peer.op(
        {"op": "subscribe", "channel": CHANNEL, "since": {"offset": 3, "epoch": "e"}}
    )
    assert reply == {"op": "ok", "ref": None, "recovered": False}
    await service_of(client).publish(CHANNEL, "plain")
    assert await peer.next() == {"op": "message", "channel": CHANNEL, "data": "plain"}
    assert service_of(client).state()["history"] == {"size": 0}


async def test_the_held_subscription_is_dropped_when_the_read_is_cancelled(
    start_recovering, connect, monkeypatch
) -> None:
    client = await start_recovering()
    service = service_of(client)
    peer = await connect(client)
    handlers: list[asyncio.Task] = []

    async def never(channel: str, since: Position | None):
        task = asyncio.current_task()  # the /ws handler reading for this client
        assert task is not None
        handlers.append(task)
        await asyncio.Event().wait()

    monkeypatch.setattr(service.history, "read", never)
    await peer.send({"op": "subscribe", "channel": CHANNEL})
    await eventually(lambda: bool(handlers), what="the read to start")
    assert service.hub.channels() == {CHANNEL: 1}  # held: counted, and received
    handlers[0].cancel()  # as at shutdown
    await eventually(lambda: service.hub.channels() == {}, what="the held subscription to go")
    await eventually(lambda: not service.hub.connections, what="the connection to go")


async def test_peers_see_one_order(start_recovering, connect, backend) -> None:
    """Publishers on both instances at once: every subscriber sees the same sequence."""
    a, b = await pair(start_recovering, backend)
    peers: list[Peer] = [await connect(a), await connect(b), await connect(b)]
    for peer in peers:
        await resubscribe(peer, CHANNEL)
    await asyncio.gather(
        *(service_of(a).publish(CHANNEL, f"a{n}") for n in range(100)),
        *(service_of(b).publish(CHANNEL, f"b{n}") for n in range(100)),
    )
    seen = [[await peer.next() for _ in range(200)] for peer in peers]
    assert [m["offset"] for m in seen[0]] == list(range(1, 201))
    assert seen[0] == seen[1] == seen[2]
    for peer in peers:  # and nothing more
        assert await peer.op({"op": "ping"}) == {"op": "pong"}


async def test_a_reload_applies_private_channels_and_keeps_the_history_size(
    start_recovering,
) -> None:
    service = service_of(await start_recovering())
    settings = dataclasses.replace(service.settings, history_size=5, private_channels=("ops.*",))
    changes = service.configure(settings)
    assert "websocket.history_size: 100 -> 5 (applies at restart)" in changes
    assert "websocket.private_channels: () -> ('ops.*',)" in changes
    assert service.private.matches("ops.x")
    assert service.history is not None
    assert service.history.size == 100
