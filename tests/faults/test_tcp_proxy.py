"""The TcpProxy's slow mode (what the fault report's slow shard is made of).

A lower bound on a delay is no timed assertion: the proxy holds the bytes at
least that long whatever the machine's load. Where a test must show that
something is *not* delayed, the delay is 30 s and the wait a third of it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from tests.support.tcp_proxy import TcpProxy

LONG = 30.0  # a delay no wait of these tests could sit out

Connect = Callable[[], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]


class Echo:
    """A target that answers each chunk with the same bytes; `arrived` holds what it got."""

    def __init__(self) -> None:
        self.arrived: asyncio.Queue[bytes] = asyncio.Queue()
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(1024):
                self.arrived.put_nowait(data)
                writer.write(data)
                if data == b"bye":
                    return
                await writer.drain()
        except OSError:
            pass  # the proxy aborted the connection
        finally:
            writer.close()

    async def close(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()


@pytest.fixture
async def echo() -> AsyncIterator[Echo]:
    server = Echo()
    await server.start()
    yield server
    await server.close()


@pytest.fixture
async def proxy(echo: Echo) -> AsyncIterator[TcpProxy]:
    async with TcpProxy("127.0.0.1", echo.port) as proxy:
        yield proxy


@pytest.fixture
async def connect(proxy: TcpProxy) -> AsyncIterator[Connect]:
    """`await connect()`: a client connection through the proxy, closed after the test."""
    writers: list[asyncio.StreamWriter] = []

    async def open_one() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        writers.append(writer)
        return reader, writer

    yield open_one
    for writer in writers:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def test_slow_holds_each_answer_and_keeps_their_order(
    proxy: TcpProxy, connect: Connect
) -> None:
    reader, writer = await connect()
    writer.write(b"warm")
    assert await reader.readexactly(4) == b"warm"
    await proxy.slow(0.3)
    loop = asyncio.get_running_loop()
    sent_a = loop.time()
    writer.write(b"a")
    await asyncio.sleep(0.1)
    sent_b = loop.time()
    writer.write(b"b")
    assert await reader.readexactly(1) == b"a"
    assert loop.time() - sent_a >= 0.3
    assert await reader.readexactly(1) == b"b"
    assert loop.time() - sent_b >= 0.3


async def test_slow_delays_answers_not_requests(
    proxy: TcpProxy, echo: Echo, connect: Connect
) -> None:
    reader, writer = await connect()
    await proxy.slow(LONG)
    writer.write(b"q")
    assert await asyncio.wait_for(echo.arrived.get(), LONG / 3) == b"q"
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(reader.read(1), 0.2)


async def test_restore_ends_the_delay_for_what_comes_next(
    proxy: TcpProxy, connect: Connect
) -> None:
    reader, writer = await connect()
    await proxy.slow(LONG)
    await proxy.restore()
    writer.write(b"x")
    assert await asyncio.wait_for(reader.readexactly(1), LONG / 3) == b"x"
    assert proxy.mode == "forward"


async def test_the_end_of_a_slow_stream_comes_after_its_bytes(
    proxy: TcpProxy, connect: Connect
) -> None:
    reader, writer = await connect()
    await proxy.slow(0.2)
    writer.write(b"bye")
    assert await reader.read(10) == b"bye"
    assert await reader.read(10) == b""  # then the end, not a reset before the bytes


async def test_slow_is_refused_during_a_cut_and_for_no_delay(proxy: TcpProxy) -> None:
    with pytest.raises(ValueError, match="positive"):
        await proxy.slow(0)
    await proxy.cut("refuse")
    with pytest.raises(ValueError, match="restore"):
        await proxy.slow(1.0)
