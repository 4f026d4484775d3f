"""`{"op": "presence"}`: subscribers counted on every instance; private channels refused."""

from __future__ import annotations

from typing import Any

from app.websocket.redis_presence import RedisPresence
from tests.support.polling import eventually
from tests.support.private_redis import PrivateRedis
from tests.websocket.conftest import WITH_REDIS, Peer, service_of

CHANNEL = "chat.here"


async def presence(peer: Peer, channel: str = CHANNEL, ref: Any = None) -> int:
    reply = await peer.op({"op": "presence", "channel": channel, "ref": ref})
    assert reply["op"] == "presence", reply
    assert (reply["channel"], reply["ref"]) == (channel, ref)
    return int(reply["subscribers"])


async def test_presence_counts_this_instances_subscribers(start_recovering, connect) -> None:
    client = await start_recovering()
    asker, *subscribers = [await connect(client) for _ in range(4)]
    assert await presence(asker, ref="p") == 0
    for peer in subscribers:
        await peer.op({"op": "subscribe", "channel": CHANNEL})
    await subscribers[0].op({"op": "subscribe", "channel": CHANNEL})  # twice is once
    assert await presence(asker) == 3
    await subscribers[0].ok({"op": "unsubscribe", "channel": CHANNEL})
    await subscribers[1].ws.close()
    await eventually(lambda: service_of(client).hub.subscribers(CHANNEL) == 1, what="leaving")
    assert await presence(asker) == 1


async def test_private_channels_are_neither_subscribed_nor_counted(
    start_recovering, connect
) -> None:
    client = await start_recovering(WEBSOCKET__PRIVATE_CHANNELS='["ops.*"]')
    service = service_of(client)
    service.hide("internal")
    peer = await connect(client)
    for channel in ("ops.audit", "internal"):
        for op in ("subscribe", "presence"):
            reply = await peer.op({"op": op, "channel": channel, "ref": 1})
            assert reply["op"] == "error"
            assert (reply["code"], reply["ref"]) == ("forbidden", 1)
            assert "a private channel" in reply["message"]
    assert service.hub.channels() == {}
    reply = await peer.op({"op": "presence", "channel": "Not A Channel"})
    assert reply["code"] == "bad_channel"
    assert service.state()["private_channels"] == ["ops.*", "internal"]
    # Server code still publishes there; the connection is fine.
    await service.publish("ops.audit", {"who": "server"})
    assert await peer.op({"op": "ping"}) == {"op": "pong"}


async def test_presence_sums_every_instance_and_forgets_one_that_stops(
    start_app, connect, shared_redis
) -> None:
    settings = {**shared_redis, "REDIS__HEARTBEAT_INTERVAL": "0.2"}
    a = await start_app(WITH_REDIS, **settings)
    b = await start_app(WITH_REDIS, **settings)
    on_a = [await connect(a) for _ in range(2)]
    on_b = [await connect(b) for _ in range(3)]
    for peer in (*on_a, *on_b):
        await peer.op({"op": "subscribe", "channel": CHANNEL})

    async def counts(expected: int) -> bool:
        return await presence(on_a[0]) == expected and await presence(on_b[0]) == expected

    await eventually(lambda: counts(5), what="both instances to count 5")
    await on_b[2].ws.close()
    await eventually(lambda: counts(4), what="both to count 4")
    assert isinstance(service_of(a).presence, RedisPresence)
    assert service_of(a).state()["presence"]["reported_channels"] == 1

    await b.close()  # a clean stop withdraws its counts at once
    assert await presence(on_a[0]) == 2


async def test_presence_is_unavailable_while_redis_is_and_rewritten_after_a_restart(
    start_app, connect, private_redis: PrivateRedis
) -> None:
    settings = {"REDIS__URL": private_redis.url, "REDIS__HEARTBEAT_INTERVAL": "0.2"}
    a = await start_app(WITH_REDIS, **settings)
    b = await start_app(WITH_REDIS, **settings)
    subscriber, asker = await connect(a), await connect(b)
    await subscriber.op({"op": "subscribe", "channel": CHANNEL})
    await eventually(lambda: _counts(asker, 1), what="b to count a's subscriber")

    private_redis.pause()
    try:
        reply = await asker.op({"op": "presence", "channel": CHANNEL, "ref": 3})
        assert (reply["op"], reply["code"], reply["ref"]) == ("error", "unavailable", 3)
        assert "Redis" in reply["message"]
    finally:
        private_redis.resume()

    private_redis.restart()  # everything a reported is gone; it notices and reports again
    await eventually(lambda: _counts(asker, 1), what="a to report again after the restart")


async def _counts(peer: Peer, expected: int) -> bool:
    reply = await peer.op({"op": "presence", "channel": CHANNEL})
    return reply.get("subscribers") == expected
