"""One client socket: its subscriptions, a bounded send queue, and how it is closed.

Every frame to a client goes through `send()`, which never awaits, so one slow
socket never delays the others in a broadcast:

- While nothing is queued and the transport takes data (asyncio has not
  paused writing: its buffer is under the high-water mark), the frame is
  written to the transport at once. That is the common case, and it costs one
  `transport.write` of bytes shared by every subscriber.
- Otherwise the frame joins this connection's queue, which a task started on
  demand drains, in order, as the transport's buffer empties.
- When `send_queue` frames are already queued the client cannot keep up: it is
  closed with 1013 (Try Again Later) and what was queued is dropped. A client
  costs at most `send_queue` frames plus the transport's high-water mark of
  memory, whatever the publishers do.

Frames are written to the transport directly rather than through aiohttp's
`send_str`: Keel turns compression off, so a frame is the same bytes for every
subscriber (`frames.py`). aiohttp's own frames (pong, close, heartbeat pings)
are written whole by synchronous calls too, so the two never interleave.

`close(code)` never awaits either. It writes the close frame and lets the
handler's receive loop read on until the client answers with its own (the
closing handshake: the client sees `code` and a clean close); a client that
does not answer within `CLOSE_TIMEOUT` — or cannot, because it stopped
reading — is cut off.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.base_protocol import BaseProtocol

from app.websocket.frames import close_frame

# Seconds a client gets to answer our close frame (and to read what its
# transport still buffers) before the socket is cut.
CLOSE_TIMEOUT = 3.0

TRY_AGAIN_LATER = 1013
GOING_AWAY = 1001


class Connection:
    """A `/ws` client as the hub sees it."""

    __slots__ = (
        "_cut_off",
        "_flusher",
        "_on_fall_behind",
        "_protocol",
        "_queue",
        "_transport",
        "_writer",
        "close_code",
        "closing",
        "send_queue",
        "subscriptions",
        "tat",
        "ws",
    )

    def __init__(
        self,
        ws: web.WebSocketResponse,
        request: web.BaseRequest,
        writer: AbstractStreamWriter,
        *,
        send_queue: int,
        on_fall_behind: Callable[[Connection], None],
    ) -> None:
        transport = request.transport
        if transport is None:
            raise ConnectionResetError("the client went away during the handshake")
        self.ws = ws
        self._transport: asyncio.Transport = transport
        self._protocol: BaseProtocol = request.protocol
        self._writer = writer
        self.send_queue = send_queue
        self._on_fall_behind = on_fall_behind
        # A list, not a set: one small list costs a quarter of an empty set, and
        # there are at most `max_subscriptions` entries.
        self.subscriptions: list[str] = []
        # The publish budget: GCRA's theoretical arrival time, in microseconds.
        self.tat: int | None = None
        self._queue: deque[bytes] | None = None  # not None while a flusher runs
        self._flusher: asyncio.Task[None] | None = None
        self._cut_off: asyncio.TimerHandle | None = None
        self.closing = False
        self.close_code: int | None = None  # sent by us, once close() was called

    @property
    def queued(self) -> int:
        """Frames waiting for the transport."""
        return len(self._queue) if self._queue is not None else 0

    def send(self, frame: bytes) -> bool:
        """Write `frame` now or queue it; False when it is dropped (closing, or fell behind)."""
        if self.closing or self.ws.closed or self._transport.is_closing():
            return False
        if self._queue is None and not self._protocol.writing_paused:
            self._transport.write(frame)
            return True
        return self._enqueue(frame)

    def _enqueue(self, frame: bytes) -> bool:
        queue = self._queue
        if queue is None:
            queue = self._queue = deque()
            self._flusher = asyncio.get_running_loop().create_task(self._flush(queue))
        elif len(queue) >= self.send_queue:
            self._on_fall_behind(self)
            self.close(TRY_AGAIN_LATER, "cannot keep up")
            return False
        queue.append(frame)
        return True

    async def _flush(self, queue: deque[bytes]) -> None:
        transport = self._transport
        try:
            while queue:
                await self._writer.drain()  # returns at once unless writing is paused
                if self.closing or self.ws.closed or transport.is_closing():
                    return
                while queue and not self._protocol.writing_paused:
                    transport.write(queue.popleft())
        except ConnectionError:
            return  # the peer is gone: the receive loop ends the handler
        finally:
            self._queue = None
            self._flusher = None

    def close(self, code: int, reason: str = "") -> None:
        """Start the closing handshake with `code`; what is still queued is dropped."""
        if self.closing:
            return
        self.closing = True
        if self._queue is not None:
            self._queue.clear()
        transport = self._transport
        if self.ws.closed or transport.is_closing():
            return  # aiohttp is closing it already
        self.close_code = code
        # Behind whatever the transport still holds: a slow client reads it first.
        transport.write(close_frame(code, reason))
        self._cut_off = asyncio.get_running_loop().call_later(CLOSE_TIMEOUT, transport.abort)

    async def finish(self) -> None:
        """The receive loop has ended: stop the flusher and end the socket cleanly."""
        self.closing = True
        if self._flusher is not None:
            self._flusher.cancel()
            await asyncio.wait([self._flusher])
        if self.close_code is not None:
            # We sent a close frame and the client answered (or is gone): end TCP.
            if self._cut_off is not None:
                self._cut_off.cancel()
            self._transport.close()
        elif not self.ws.closed:
            # The client started the closing handshake: answer it (aiohttp closes TCP).
            await self.ws.close(drain=False)
