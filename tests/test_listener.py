"""Serving on an inherited socket (`serve --listen-fd`) and closing connections while draining."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from pathlib import Path

import aiohttp
from aiohttp.test_utils import TestClient

from app.application import create_app
from app.core.lifecycle import LIFECYCLE
from tests.support.apps import PROBE, ConfigFactory
from tests.support.services import REPO

TOML = """
[server]
drain_delay = 0.5
shutdown_timeout = 5
[plugins]
enabled = ["metrics"]
"""


async def test_a_draining_instance_closes_each_connection_after_its_response(
    aiohttp_client, make_config: ConfigFactory
) -> None:
    app = create_app(make_config(f'[plugins]\nenabled = ["metrics", "{PROBE}"]\n'))
    client: TestClient = await aiohttp_client(app)
    response = await client.get("/healthz")
    assert response.headers.get("Connection", "").lower() != "close"

    app[LIFECYCLE].start_draining()
    response = await client.get("/healthz")
    assert response.status == 200
    assert response.headers["Connection"] == "close"
    # A WebSocket handshake keeps its Connection: upgrade (the drain closes sockets with 1001;
    # /ws itself refuses new ones while draining, tests/websocket/test_shutdown.py).
    async with client.ws_connect("/test/ws") as ws:
        await ws.send_str("ping")
        assert await ws.receive_str() == "ping"


def listening_socket() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    return sock


async def start_serve(
    tmp_path: Path, fd: int, name: str, *, inherit: bool = True
) -> asyncio.subprocess.Process:
    config = tmp_path / "config.toml"
    config.write_text(TOML)
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEEL_")}
    env["KEEL_SERVER__DATA_DIR"] = str(tmp_path / "data")
    with (tmp_path / f"{name}.log").open("wb") as log:
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "run.py",
            "--config",
            str(config),
            "serve",
            "--listen-fd",
            str(fd),
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=asyncio.subprocess.STDOUT,
            pass_fds=(fd,) if inherit else (),
        )


async def test_a_request_waiting_between_two_processes_on_one_socket_is_answered(
    tmp_path: Path,
) -> None:
    """The socket outlives the process: what arrives in between waits for the next one."""
    sock = listening_socket()
    port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/healthz"
    started: list[asyncio.subprocess.Process] = []
    timeout = aiohttp.ClientTimeout(total=30)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session:
            started.append(await start_serve(tmp_path, sock.fileno(), "first"))
            async with session.get(url) as response:  # waits in the queue until it is up
                assert response.status == 200
            log = (tmp_path / "first.log").read_text()
            assert f"serving on http://127.0.0.1:{port} " in log
            started[0].send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(started[0].wait(), 15) == 0

            # Nobody serves the port now, yet a request is not refused: it waits.
            waiting = asyncio.create_task(session.get(url))
            await asyncio.sleep(0.3)
            assert not waiting.done()
            started.append(await start_serve(tmp_path, sock.fileno(), "second"))
            response = await waiting
            assert response.status == 200
            response.release()
            started[1].send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(started[1].wait(), 15) == 0
    finally:
        sock.close()
        for process in started:
            if process.returncode is None:
                process.kill()
                await process.wait()


async def test_a_listen_fd_that_is_no_socket_is_a_startup_failure(tmp_path: Path) -> None:
    process = await start_serve(tmp_path, 97, "bad", inherit=False)
    assert await asyncio.wait_for(process.wait(), 15) == 1
    assert "--listen-fd 97: not an open socket" in (tmp_path / "bad.log").read_text()
