"""SIGTERM against a real `run.py`: every client is closed with 1001 during the drain,
and open sockets — even one whose client never answers — never hold the exit up."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import aiohttp

from app.core.lifecycle import LIFECYCLE
from tests.support.apps import StartApp
from tests.support.process import KeelProcess

SHUTDOWN_TIMEOUT = 20.0


def config(redis_url: str, redis_prefix: str) -> str:
    return f"""
[server]
drain_delay = 0.5
shutdown_timeout = {SHUTDOWN_TIMEOUT}

[plugins]
enabled = ["metrics", "redis", "websocket"]

[redis]
url = "{redis_url}"
key_prefix = "{redis_prefix}"

[websocket]
history_size = 0
"""


async def read_until_closed(ws: aiohttp.ClientWebSocketResponse) -> int | None:
    async for _ in ws:
        pass
    return ws.close_code


async def test_sigterm_closes_clients_with_1001_and_exits_0_quickly(
    tmp_path: Path, redis_url: str, redis_prefix: str
) -> None:
    server = await KeelProcess(tmp_path, config(redis_url, redis_prefix)).start()
    try:
        async with aiohttp.ClientSession() as session:
            clients = [await session.ws_connect(f"{server.url}/ws") for _ in range(3)]
            for ws in clients:
                await ws.send_json({"op": "subscribe", "channel": "news"})
                assert (await ws.receive_json()) == {"op": "ok", "ref": None}
            # This one never reads again, so it never answers the close frame.
            stubborn = await session.ws_connect(f"{server.url}/ws")
            readers = [asyncio.create_task(read_until_closed(ws)) for ws in clients]

            started = time.monotonic()
            server.signal(signal.SIGTERM)
            assert await server.exit_status(timeout=SHUTDOWN_TIMEOUT) == 0
            took = time.monotonic() - started
            assert await asyncio.gather(*readers) == [1001, 1001, 1001]
            await stubborn.close()
    finally:
        await server.kill()
    # drain_delay, then at most the close timeout for the one that never answered.
    assert took < 6, f"shutdown took {took:.1f}s"
    log = server.log()
    assert "shutdown report: drained 0 of 0 in-flight request(s)" in log
    assert "did not finish" not in log
    assert "Traceback" not in log


async def test_a_draining_instance_refuses_new_sockets_so_clients_go_elsewhere(
    start_app: StartApp,
) -> None:
    """During drain_delay the load balancer is still taking it out: a socket opened then
    would be closed with 1001 moments later, so the handshake gets 503 and Retry-After."""
    client = await start_app()
    open_before = await client.ws_connect("/ws")
    client.app[LIFECYCLE].start_draining()
    try:
        await client.ws_connect("/ws")
    except aiohttp.WSServerHandshakeError as exc:
        refused = exc
    else:
        raise AssertionError("a draining instance accepted a new socket")
    assert refused.status == 503
    assert refused.headers is not None
    assert refused.headers["Retry-After"] == "1"
    assert not open_before.closed  # the drain step closes it (1001), not the draining phase
    await open_before.close()
