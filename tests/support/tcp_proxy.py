"""A TCP proxy a test can cut: the fake at the network boundary of a real server.

    proxy = TcpProxy("127.0.0.1", 5432)
    await proxy.start()            # listens on 127.0.0.1:<proxy.port>
    await proxy.cut("blackhole")   # or "refuse"
    await proxy.restore()
    await proxy.slow(2.0)          # every answer arrives 2 s late
    await proxy.restore()
    await proxy.close()

`cut()` aborts every open connection, then either closes the listener
("refuse": connecting fails at once with ECONNREFUSED) or keeps accepting
without ever forwarding a byte ("blackhole": the client's connect succeeds and
its first read never returns, as behind a dead host or a dropped route; it
has to time out). With `drop_open=False` a blackhole also freezes the open
connections instead of aborting them: they stay open and silently eat what is
sent, both ways. `restore()` forwards again on the same port; connections
accepted or frozen during the cut are closed then, since bytes were lost on
them.

`slow(seconds)` keeps every connection and forwards every byte, in order,
but what the target sends reaches the client `seconds` after it arrived: each
round trip (a query and its answer) takes `seconds` longer. Bytes already on
their way keep the time they were given; `restore()` ends the delay.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Literal

Mode = Literal["forward", "refuse", "blackhole", "slow"]

_CHUNK = 65536


class _Link:
    """One client connection and, while forwarding, its upstream connection."""

    def __init__(self, client: asyncio.StreamWriter) -> None:
        self.client = client
        self.upstream: asyncio.StreamWriter | None = None
        self.frozen = False

    def abort(self) -> None:
        for writer in (self.client, self.upstream):
            if writer is not None:
                writer.transport.abort()


class TcpProxy:
    def __init__(self, target_host: str, target_port: int, *, host: str = "127.0.0.1") -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.host = host
        self.port = 0
        self.mode: Mode = "forward"
        self.delay = 0.0  # seconds each byte is held before it is forwarded ("slow")
        self.accepted = 0  # connections accepted so far, whatever the mode
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    async def start(self) -> None:
        await self._listen()

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(
            self._accept, self.host, self.port, reuse_address=True
        )
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def _stop_listening(self) -> None:
        if self._server is not None:
            server, self._server = self._server, None
            server.close()
            await server.wait_closed()

    async def cut(self, mode: Literal["refuse", "blackhole"], *, drop_open: bool = True) -> None:
        """Stop answering: see the module docstring for the two modes."""
        if mode not in ("refuse", "blackhole"):
            raise ValueError(f"unknown mode {mode!r}")
        if mode == "refuse" and not drop_open:
            raise ValueError("refuse always drops open connections")
        self.mode = mode
        if mode == "refuse":
            await self._stop_listening()
        for link in list(self._links):
            if drop_open:
                link.abort()
            else:
                link.frozen = True
        await asyncio.sleep(0)  # let the pumps see their connections go

    async def slow(self, seconds: float) -> None:
        """Hold what the target sends `seconds` before the client gets it; restore() ends it."""
        if seconds <= 0:
            raise ValueError(f"a delay must be positive, got {seconds}")
        if self.mode in ("refuse", "blackhole"):
            raise ValueError(f"restore() the {self.mode} cut first")
        self.mode = "slow"
        self.delay = seconds

    async def restore(self) -> None:
        """Forward again (on the same port); connections hurt by the cut are closed."""
        for link in list(self._links):
            if link.frozen:  # accepted during a blackhole, or frozen by it
                link.abort()
        self.mode = "forward"
        self.delay = 0.0
        if self._server is None:
            await self._listen()

    async def close(self) -> None:
        await self._stop_listening()
        for link in list(self._links):
            link.abort()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def __aenter__(self) -> TcpProxy:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        link = _Link(writer)
        self._links.add(link)
        self.accepted += 1
        try:
            if self.mode == "blackhole":
                link.frozen = True
                await self._swallow(reader)
            else:
                await self._forward(link, reader)
        finally:
            self._links.discard(link)
            link.abort()
            self._tasks.discard(task)

    async def _swallow(self, reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(OSError):
            while await reader.read(_CHUNK):
                pass

    async def _forward(self, link: _Link, reader: asyncio.StreamReader) -> None:
        try:
            up_reader, link.upstream = await asyncio.open_connection(
                self.target_host, self.target_port
            )
        except OSError:
            return
        pumps = [
            asyncio.create_task(self._pump(link, reader, link.upstream, answers=False)),
            asyncio.create_task(self._pump(link, up_reader, link.client, answers=True)),
        ]
        try:
            # Either side closing ends the link: the other side is closed with it.
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pump in pumps:
                pump.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)

    async def _pump(
        self,
        link: _Link,
        source: asyncio.StreamReader,
        sink: asyncio.StreamWriter,
        *,
        answers: bool,
    ) -> None:
        """Read `source` and forward to `sink`; `answers` (target to client) are delayed.

        Reading goes on while a chunk waits, so a delay adds latency without
        limiting throughput; the end of `source` is passed on after the bytes
        before it.
        """
        loop = asyncio.get_running_loop()
        due: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()
        delivering = asyncio.create_task(self._deliver(link, due, sink))
        try:
            with contextlib.suppress(OSError):
                while data := await source.read(_CHUNK):
                    if link.frozen:
                        continue  # blackholed: swallowed, never delivered
                    due.put_nowait((loop.time() + (self.delay if answers else 0.0), data))
            due.put_nowait(None)
            await delivering
        finally:
            delivering.cancel()
            await asyncio.gather(delivering, return_exceptions=True)

    @staticmethod
    async def _deliver(
        link: _Link, due: asyncio.Queue[tuple[float, bytes] | None], sink: asyncio.StreamWriter
    ) -> None:
        loop = asyncio.get_running_loop()
        with contextlib.suppress(OSError):
            while (chunk := await due.get()) is not None:
                at, data = chunk
                if (wait := at - loop.time()) > 0:
                    await asyncio.sleep(wait)
                if link.frozen:
                    continue  # blackholed while it waited
                sink.write(data)
                await sink.drain()
