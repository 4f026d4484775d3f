"""The real app with the websocket plugin, and a small client for its protocol."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp.test_utils import TestClient

from app.websocket import WEBSOCKET
from app.websocket.service import WebSocketService
from tests.support.apps import StartApp

REPLY_TIMEOUT = 2.0


class Peer:
    """A test's WebSocket client: send frames, read what the server sends."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws

    async def send(self, frame: dict[str, Any] | str) -> None:
        await self.ws.send_str(frame if isinstance(frame, str) else json.dumps(frame))

    async def next(self, timeout: float = REPLY_TIMEOUT) -> dict[str, Any]:
        """The next frame the server sends, parsed."""
        message = await self.receive(timeout)
        assert message.type is aiohttp.WSMsgType.TEXT, message
        frame: dict[str, Any] = orjson.loads(message.data)
        return frame

    async def receive(self, timeout: float) -> aiohttp.WSMessage:
        # Not receive(timeout=): aiohttp restarts that timeout at every ping it answers.
        async with asyncio.timeout(timeout):
            return await self.ws.receive()

    async def op(self, frame: dict[str, Any] | str) -> dict[str, Any]:
        """Send and return the reply (the next frame)."""
        await self.send(frame)
        return await self.next()

    async def ok(self, frame: dict[str, Any]) -> None:
        reply = await self.op(frame)
        assert reply == {"op": "ok", "ref": frame.get("ref")}, reply

    async def subscribe(self, *channels: str) -> None:
        for channel in channels:
            await self.ok({"op": "subscribe", "channel": channel})

    async def silent(self, within: float = 0.2) -> None:
        """Nothing arrives within `within` seconds."""
        try:
            message = await self.receive(within)
        except TimeoutError:
            return
        raise AssertionError(f"unexpected frame: {message}")

    async def close_code(self, timeout: float = 5.0) -> int | None:
        """Read until the server closes; its close code."""
        deadline = time.monotonic() + timeout
        while True:
            message = await self.receive(max(0.01, deadline - time.monotonic()))
            if message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                # After aiohttp's answer to the close frame: 1006 had the handshake failed.
                return self.ws.close_code
            if message.type is aiohttp.WSMsgType.ERROR:
                raise AssertionError(f"socket error instead of a close: {message.data!r}")


def service_of(client: TestClient) -> WebSocketService:
    return client.app[WEBSOCKET]


@pytest.fixture
def start_app(start_app: StartApp) -> StartApp:
    """`await start_app(plugins, **env)`: a test client of the real app (chat.* publishable).

    History is off unless a test turns it on (`WEBSOCKET__HISTORY_SIZE`): these tests
    pin the frames as they are without it; those of recovery set it."""

    async def start(plugins: Sequence[str] = ("metrics", "websocket"), **env: str) -> TestClient:
        defaults = {"WEBSOCKET__PUBLISH_CHANNELS": '["chat.*"]', "WEBSOCKET__HISTORY_SIZE": "0"}
        return await start_app(plugins, **{**defaults, **env})

    return start


@pytest.fixture
def connect() -> Callable[..., Awaitable[Peer]]:
    """`await connect(client, **ws_connect_kwargs)`: a Peer on the app's /ws."""

    async def open_peer(client: TestClient, **kwargs: Any) -> Peer:
        return Peer(await client.ws_connect("/ws", **kwargs))

    return open_peer


# --- recovery -------------------------------------------------------------------------

WITH_REDIS = ("metrics", "redis", "breakers", "websocket")


async def until_ok(peer: Peer, timeout: float = REPLY_TIMEOUT) -> tuple[list[dict], dict]:
    """The messages that arrive before the next `ok`, and that `ok`."""
    messages: list[dict] = []
    while True:
        frame = await peer.next(timeout)
        if frame["op"] == "ok":
            return messages, frame
        assert frame["op"] == "message", frame
        messages.append(frame)


async def resubscribe(
    peer: Peer, channel: str, since: dict | None = None, ref: Any = None
) -> tuple[list[dict], dict]:
    """Subscribe (with `since`); the replayed messages and the `ok`."""
    frame: dict[str, Any] = {"op": "subscribe", "channel": channel, "ref": ref}
    if since is not None:
        frame["since"] = since
    await peer.send(frame)
    return await until_ok(peer)


@pytest.fixture
def shared_redis(redis_url: str, redis_prefix: str) -> dict[str, str]:
    """The settings of instances that share the machine's Redis under this test's prefix."""
    return {"REDIS__URL": redis_url, "REDIS__KEY_PREFIX": redis_prefix}


def instance_toml(redis_url: str, redis_prefix: str, **websocket: Any) -> str:
    """config.toml of a `run.py` instance on the shared Redis (tests/support/process.py)."""
    lines = [f"{key} = {json.dumps(value)}" for key, value in websocket.items()]
    return f"""
[plugins]
enabled = {json.dumps(list(WITH_REDIS))}

[redis]
url = "{redis_url}"
key_prefix = "{redis_prefix}"
heartbeat_interval = 0.2
heartbeat_ttl = 1.0

[websocket]
publish_channels = ["chat.*"]
publish_limit = "1000/second"
{chr(10).join(lines)}
"""


@pytest.fixture(params=["memory", "redis"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def start_recovering(backend: str, start_app: StartApp, request: pytest.FixtureRequest) -> Any:
    """`await start_recovering(extra_plugins=(), **env)`: an instance with history on (100
    messages). With the redis backend every instance started shares one Redis (and key
    prefix); with the memory backend each is on its own."""

    async def start(extra_plugins: Sequence[str] = (), **env: str) -> TestClient:
        settings = {"WEBSOCKET__HISTORY_SIZE": "100", **env}
        if backend == "memory":
            return await start_app(("metrics", *extra_plugins, "websocket"), **settings)
        settings.setdefault("REDIS__URL", request.getfixturevalue("redis_url"))
        settings.setdefault("REDIS__KEY_PREFIX", request.getfixturevalue("redis_prefix"))
        return await start_app((*WITH_REDIS, *extra_plugins), **settings)

    return start
