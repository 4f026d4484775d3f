"""The `/ws` protocol through the real app: every op, every error, every limit."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from app.application import apply_reload
from app.core.lifecycle import LIFECYCLE
from app.metrics import METRICS
from app.websocket import hub as hub_module
from app.websocket import protocol as protocol_module
from app.websocket.frames import text_frame
from tests.support.apps import StartApp
from tests.support.polling import eventually
from tests.websocket.conftest import Peer, service_of

Connect = Any


async def test_subscribe_publish_and_receive_with_refs(start_app: StartApp, connect) -> None:
    client = await start_app()
    alice, bob = await connect(client), await connect(client)
    assert await alice.op({"op": "subscribe", "channel": "chat.lobby", "ref": 1}) == {
        "op": "ok",
        "ref": 1,
    }
    await bob.subscribe("chat.lobby")

    await alice.send({"op": "publish", "channel": "chat.lobby", "data": {"text": "hi"}, "ref": "p"})
    message = {"op": "message", "channel": "chat.lobby", "data": {"text": "hi"}}
    # Local subscribers get the message before the publisher's ok.
    assert await alice.next() == message
    assert await alice.next() == {"op": "ok", "ref": "p"}
    assert await bob.next() == message


async def test_a_publisher_need_not_subscribe_and_others_channels_stay_quiet(
    start_app: StartApp, connect
) -> None:
    client = await start_app()
    publisher, listener, elsewhere = [await connect(client) for _ in range(3)]
    await listener.subscribe("chat.a")
    await elsewhere.subscribe("chat.b")
    await publisher.ok({"op": "publish", "channel": "chat.a", "data": [1, 2, 3]})
    assert await listener.next() == {"op": "message", "channel": "chat.a", "data": [1, 2, 3]}
    await elsewhere.silent()
    await publisher.silent(0.05)


async def test_ping_answers_pong_with_or_without_ref(start_app: StartApp, connect) -> None:
    peer = await connect(await start_app())
    assert await peer.op({"op": "ping"}) == {"op": "pong"}
    assert await peer.op({"op": "ping", "ref": "r1"}) == {"op": "pong", "ref": "r1"}


async def test_unsubscribe_stops_delivery_and_both_ops_are_idempotent(
    start_app: StartApp, connect
) -> None:
    client = await start_app()
    service = service_of(client)
    peer = await connect(client)
    await peer.subscribe("chat.x", "chat.x")
    assert service.hub.channels() == {"chat.x": 1}
    await service.publish("chat.x", 1)
    assert (await peer.next())["data"] == 1

    await peer.ok({"op": "unsubscribe", "channel": "chat.x", "ref": 9})
    await peer.ok({"op": "unsubscribe", "channel": "chat.x"})
    await peer.ok({"op": "unsubscribe", "channel": "chat.never"})
    assert service.hub.channels() == {}
    await service.publish("chat.x", 2)
    await peer.silent()


ERRORS = [
    ("not json", "bad_json"),
    ("[1]", "bad_json"),
    ({}, "invalid"),
    ({"op": "subscribe"}, "invalid"),
    ({"op": "publish", "channel": "chat.x"}, "invalid"),
    ({"op": "ping", "ref": {"no": "objects"}}, "invalid"),
    ({"op": "shout"}, "unknown_op"),
    ({"op": "subscribe", "channel": "UPPER"}, "bad_channel"),
    ({"op": "subscribe", "channel": "x" * 101}, "bad_channel"),
    ({"op": "publish", "channel": "news", "data": 1}, "forbidden"),
    ({"op": "publish", "channel": "items", "data": 1}, "forbidden"),
    ({"op": "publish", "channel": "jobs", "data": 1}, "forbidden"),
]


@pytest.mark.parametrize(("frame", "code"), ERRORS)
async def test_each_error_is_an_error_op_and_the_connection_stays_open(
    start_app: StartApp, connect, frame: Any, code: str
) -> None:
    peer = await connect(await start_app())
    reply = await peer.op(frame)
    assert reply["op"] == "error"
    assert reply["code"] == code
    assert isinstance(reply["message"], str)
    assert reply["message"]
    assert await peer.op({"op": "ping"}) == {"op": "pong"}


async def test_an_error_echoes_the_ref(start_app: StartApp, connect) -> None:
    peer = await connect(await start_app())
    reply = await peer.op({"op": "publish", "channel": "items", "data": 1, "ref": "mine"})
    assert reply == {
        "op": "error",
        "code": "forbidden",
        "message": "cannot publish on items: a server channel",
        "ref": "mine",
    }


async def test_a_binary_frame_is_refused_and_the_connection_stays_open(
    start_app: StartApp, connect
) -> None:
    peer = await connect(await start_app())
    await peer.ws.send_bytes(b'{"op":"ping"}')
    reply = await peer.next()
    assert (reply["op"], reply["code"]) == ("error", "bad_frame")
    assert await peer.op({"op": "ping"}) == {"op": "pong"}


async def test_plugins_open_channels_to_clients_with_allow_publish(
    start_app: StartApp, connect
) -> None:
    client = await start_app(WEBSOCKET__PUBLISH_CHANNELS="[]")
    peer = await connect(client)
    refused = await peer.op({"op": "publish", "channel": "chat.x", "data": 1})
    assert refused["code"] == "forbidden"
    service_of(client).allow_publish("chat.*")
    await peer.ok({"op": "publish", "channel": "chat.x", "data": 1})
    assert service_of(client).state()["publish_channels"] == ["chat.*"]


async def test_the_demo_plugin_opens_chat_to_clients(start_app: StartApp, connect) -> None:
    client = await start_app(("metrics", "websocket", "demo"), WEBSOCKET__PUBLISH_CHANNELS="[]")
    peer = await connect(client)
    await peer.ok({"op": "publish", "channel": "chat.lobby", "data": "hi"})
    refused = await peer.op({"op": "publish", "channel": "news", "data": 1})
    assert refused["code"] == "forbidden"


async def test_subscriptions_per_connection_are_limited(start_app: StartApp, connect) -> None:
    client = await start_app(WEBSOCKET__MAX_SUBSCRIPTIONS="3")
    peer = await connect(client)
    await peer.subscribe("a", "b", "c")
    reply = await peer.op({"op": "subscribe", "channel": "d", "ref": 4})
    assert (reply["code"], reply["ref"]) == ("too_many_subscriptions", 4)
    await peer.subscribe("a")  # already subscribed: no new subscription
    await peer.ok({"op": "unsubscribe", "channel": "a"})
    await peer.subscribe("d")
    assert service_of(client).hub.channels() == {"b": 1, "c": 1, "d": 1}


async def test_publishing_is_rate_limited_per_connection(start_app: StartApp, connect) -> None:
    client = await start_app(WEBSOCKET__PUBLISH_LIMIT="3/minute")
    peer, other = await connect(client), await connect(client)
    for n in range(3):
        await peer.ok({"op": "publish", "channel": "chat.x", "data": n})
    reply = await peer.op({"op": "publish", "channel": "chat.x", "data": 3, "ref": 3})
    assert (reply["code"], reply["ref"]) == ("rate_limited", 3)
    assert "3/minute" in reply["message"]
    assert await peer.op({"op": "ping"}) == {"op": "pong"}  # still open
    await other.ok({"op": "publish", "channel": "chat.x", "data": 0})  # its own budget


async def test_a_frame_over_max_message_size_closes_with_1009(start_app: StartApp, connect) -> None:
    client = await start_app(WEBSOCKET__MAX_MESSAGE_SIZE="1024")
    peer = await connect(client)
    await peer.ok({"op": "publish", "channel": "chat.x", "data": "x" * 900})
    await peer.send({"op": "publish", "channel": "chat.x", "data": "x" * 2000})
    assert await peer.close_code() == 1009
    await eventually(lambda: not service_of(client).hub.connections, what="the handler to end")


async def test_heartbeats_close_a_peer_that_stops_answering(start_app: StartApp) -> None:
    client = await start_app(WEBSOCKET__HEARTBEAT="0.2")
    # An aiohttp client answers pings only while it reads; this one never reads.
    ws = await client.ws_connect("/ws", autoping=False)
    service = service_of(client)
    await eventually(lambda: len(service.hub.connections) == 1, what="the connection")
    await eventually(lambda: not service.hub.connections, what="the heartbeat close", timeout=3)
    await ws.close()


async def test_a_peer_that_answers_pings_stays_connected(start_app: StartApp, connect) -> None:
    client = await start_app(WEBSOCKET__HEARTBEAT="0.1")
    peer = await connect(client)
    await peer.subscribe("chat.x")
    await peer.silent(0.5)  # reading: aiohttp answers the pings
    assert len(service_of(client).hub.connections) == 1


@pytest.mark.parametrize(
    ("allowed", "origin", "status"),
    [
        ("[]", None, 101),  # not a browser
        ("[]", "SAME", 101),  # the page's own origin
        ("[]", "https://evil.example", 403),
        ('["https://app.example"]', "https://app.example", 101),
        ('["https://app.example"]', "https://app.example.evil", 403),
        ('["*"]', "https://anyone.example", 101),
        ("[]", "null", 403),
    ],
)
async def test_the_origin_is_checked_at_the_handshake(
    start_app: StartApp, allowed: str, origin: str | None, status: int
) -> None:
    client = await start_app(WEBSOCKET__ALLOWED_ORIGINS=allowed)
    headers = {}
    if origin is not None:
        headers["Origin"] = (
            f"http://{client.server.host}:{client.server.port}" if origin == "SAME" else origin
        )
    if status == 101:
        ws = await client.ws_connect("/ws", headers=headers)
        await ws.close()
        return
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await client.ws_connect("/ws", headers=headers)
    assert refused.value.status == 403
    response = await client.get("/ws", headers={**headers, "Upgrade": "websocket"})
    assert response.status == 403
    body = await response.json()
    assert body["error"]["code"] == "forbidden"
    assert "X-Request-ID" in response.headers


async def test_a_plain_get_gets_a_json_400(start_app: StartApp) -> None:
    client = await start_app()
    response = await client.get("/ws")
    assert response.status == 400
    assert (await response.json())["error"]["code"] == "bad_request"


async def test_server_code_publishes_on_any_channel(start_app: StartApp, connect) -> None:
    client = await start_app()
    service = service_of(client)
    peer = await connect(client)
    await peer.subscribe("jobs", "news")
    await service.publish("jobs", {"id": "j1", "status": "succeeded"})
    await service.publish("news", "extra")
    assert await peer.next() == {
        "op": "message",
        "channel": "jobs",
        "data": {"id": "j1", "status": "succeeded"},
    }
    assert (await peer.next())["data"] == "extra"
    with pytest.raises(ValueError, match="invalid channel name"):
        await service.publish("No Such", 1)
    with pytest.raises(ValueError, match="cannot publish on news"):
        await service.publish("news", object())


async def test_a_message_is_serialized_and_framed_once_for_every_subscriber(
    start_app: StartApp, connect, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = await start_app()
    peers = [await connect(client) for _ in range(5)]
    for peer in peers:
        await peer.subscribe("chat.x")
    calls = {"message": 0, "frame": 0}
    message, frame = protocol_module.message, text_frame

    def counting_message(*args: Any) -> bytes:
        calls["message"] += 1
        return message(*args)

    def counting_frame(*args: Any) -> bytes:
        calls["frame"] += 1
        return frame(*args)

    monkeypatch.setattr(protocol_module, "message", counting_message)
    monkeypatch.setattr(hub_module, "text_frame", counting_frame)
    await service_of(client).publish("chat.x", {"n": 1})
    for peer in peers:
        assert (await peer.next())["data"] == {"n": 1}
    assert calls == {"message": 1, "frame": 1}


async def test_item_changes_are_published_on_items(start_app: StartApp, connect) -> None:
    client = await start_app(("metrics", "sharding", "websocket"))
    peer = await connect(client)
    await peer.subscribe("items")
    created = await (await client.post("/api/items", json={"name": "lamp", "price": 2})).json()
    assert await peer.next() == {
        "op": "message",
        "channel": "items",
        "data": {"event": "created", "item": created},
    }
    put = await client.put(f"/api/items/{created['id']}", json={"name": "lamp", "price": 3})
    updated = await put.json()
    assert await peer.next() == {
        "op": "message",
        "channel": "items",
        "data": {"event": "updated", "item": updated},
    }
    assert (await client.delete(f"/api/items/{created['id']}")).status == 204
    assert await peer.next() == {
        "op": "message",
        "channel": "items",
        "data": {"event": "deleted", "id": created["id"]},
    }


async def test_metrics_state_and_readiness(start_app: StartApp, connect) -> None:
    client = await start_app()
    a, b = await connect(client), await connect(client)
    await a.subscribe("chat.x", "chat.y")
    await b.subscribe("chat.x")
    await a.send({"op": "publish", "channel": "chat.x", "data": 1})
    assert (await a.next())["op"] == "message"  # its own copy, then the ok
    assert (await a.next())["op"] == "ok"
    assert (await b.next())["op"] == "message"

    registry = client.app[METRICS].registry
    assert registry.get_sample_value("keel_ws_connections") == 2
    # in: 3 subscribes + 1 publish; out: 4 replies + 2 messages
    assert registry.get_sample_value("keel_ws_messages_total", {"direction": "in"}) == 4
    assert registry.get_sample_value("keel_ws_messages_total", {"direction": "out"}) == 6
    assert registry.get_sample_value("keel_ws_slow_client_closes_total") == 0
    assert registry.get_sample_value("keel_ws_bus_up") == 1

    state = service_of(client).state()
    assert state["connections"] == 2
    assert state["channels"] == {"chat.x": 2, "chat.y": 1}
    assert state["bus"] == {"backend": "memory", "healthy": True}

    ready = await (await client.get("/readyz")).json()
    assert ready["plugins"]["websocket"] == {"status": "ok", "detail": "bus: memory"}


async def test_open_sockets_are_connections_not_requests_in_flight(
    start_app: StartApp, connect
) -> None:
    client = await start_app()
    peers = [await connect(client) for _ in range(3)]
    await peers[0].subscribe("chat.x")
    assert client.app[LIFECYCLE].in_flight == {}
    registry = client.app[METRICS].registry
    assert registry.get_sample_value("keel_http_requests_in_flight") == 0


async def test_close_all_closes_every_client_with_1001_and_refuses_new_ones(
    start_app: StartApp, connect
) -> None:
    client = await start_app()
    service = service_of(client)
    peers: list[Peer] = [await connect(client) for _ in range(5)]
    await peers[0].subscribe("chat.x")
    # The clients read while the server closes: each answers the close frame.
    closed, *codes = await asyncio.gather(
        service.close_all(), *(peer.close_code() for peer in peers)
    )
    assert closed == 5
    assert codes == [1001] * 5
    await eventually(lambda: not service.hub.connections, what="every handler to end")
    assert service.hub.channels() == {}
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await client.ws_connect("/ws")
    assert refused.value.status == 503


async def test_job_status_changes_are_published_on_jobs(start_app: StartApp, connect) -> None:
    client = await start_app(("metrics", "sharding", "queue", "demo", "websocket"))
    peer = await connect(client)
    await peer.subscribe("jobs")
    response = await client.post("/api/jobs", json={"task": "demo.echo", "args": {"x": 1}})
    assert response.status == 202
    job_id = (await response.json())["id"]
    seen: list[str] = []
    while not seen or seen[-1] != "succeeded":
        frame = await peer.next(timeout=10)
        assert frame["channel"] == "jobs"
        assert frame["data"]["job"]["id"] == job_id
        assert frame["data"]["event"] == frame["data"]["job"]["status"]
        seen.append(frame["data"]["event"])
    assert seen[0] == "queued"
    assert frame["data"]["job"]["result"] == {"x": 1}


async def test_sighup_reloads_permissions_and_limits(
    start_app: StartApp, connect, make_config
) -> None:
    client = await start_app()
    service_of(client).allow_publish("team.*")  # a plugin's pattern survives reloads
    peer = await connect(client)
    await peer.ok({"op": "publish", "channel": "chat.x", "data": 1})

    new = make_config(
        PLUGINS__ENABLED='["metrics", "websocket"]',
        WEBSOCKET__PUBLISH_CHANNELS='["news"]',
        WEBSOCKET__ALLOWED_ORIGINS='["https://app.example"]',
    )
    changes = apply_reload(client.app, new)
    assert "websocket.publish_channels: ('chat.*',) -> ('news',)" in changes
    assert any(line.startswith("websocket.allowed_origins") for line in changes)
    assert (await peer.op({"op": "publish", "channel": "chat.x", "data": 2}))["code"] == "forbidden"
    await peer.ok({"op": "publish", "channel": "news", "data": 3})
    await peer.ok({"op": "publish", "channel": "team.a", "data": 4})
    ws = await client.ws_connect("/ws", headers={"Origin": "https://app.example"})
    await ws.close()
