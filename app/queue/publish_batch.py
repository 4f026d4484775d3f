"""Publishes of one event-loop turn leave together, each awaiting its own confirm.

aiormq's `basic_publish` pays, for every message, a channel lock, an async
context manager, a timeout scope and a trip through the connection's write
queue; with 64 submissions in flight that was a quarter of the server's CPU per
job (issue 19). Here the publishes made in one turn are one batch: one task
takes the channel's lock once, numbers them (the broker confirms by delivery
tag, counted per channel), registers each confirm where aiormq's reader
settles it, and writes the batch as one frame buffer; one timer bounds the
wait of the whole batch.

What a caller sees is what `basic_publish` gave: the broker's `Basic.Ack`, or
the error that stopped its message — a return (`PublishError`: mandatory and
unroutable), a nack, the channel's close reason, or `TimeoutError` — and only
its own: a failure of one message fails no other. A caller cancelled before
the batch is written is left out of it; one cancelled after was published, as
with `basic_publish`.

This reaches into the pinned aiormq's channel (its delivery counter,
confirmation table, lock and write queue): what `basic_publish` itself does,
without its per-message scaffolding.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

import pamqp.frame
from aiormq import Channel
from aiormq.abc import ChannelFrame, ConfirmationFrameType
from aiormq.exceptions import ChannelInvalidStateError
from pamqp import commands as spec
from pamqp.body import ContentBody

from app.queue.amqp_frames import content_header


@dataclass(slots=True)
class _Publish:
    routing_key: str
    body: bytes
    properties: spec.Basic.Properties
    confirmation: asyncio.Future[ConfirmationFrameType]


@dataclass(slots=True)
class _Batch:
    publishes: list[_Publish] = field(default_factory=list)
    waiting: int = 0  # callers not yet answered
    timer: asyncio.TimerHandle | None = None
    expired: bool = False  # its timer fired: confirms still missing were given up


class PublishBatcher:
    """Batched, confirmed, mandatory publishes to the default exchange of one channel."""

    def __init__(self, channel: Channel, timeout: float | None) -> None:
        if not channel.publisher_confirms:
            raise ValueError("a PublishBatcher needs a channel with publisher confirms")
        self.channel = channel
        self.timeout = timeout
        self._batch: _Batch | None = None  # the batch being gathered this turn
        self._method_frames: dict[str, bytes] = {}  # routing key -> Basic.Publish frame
        self._sending: set[asyncio.Task[None]] = set()  # held: the loop keeps only weak ones

    async def publish(
        self, routing_key: str, body: bytes, properties: spec.Basic.Properties
    ) -> ConfirmationFrameType:
        """Publish `body` to queue `routing_key` (mandatory) and wait for its confirm.

        `properties.message_id` must be unique among the channel's unconfirmed
        publishes: aiormq matches a returned message to its publish by it.
        """
        if self.channel.is_closed:
            raise ChannelInvalidStateError(f"{self.channel!r} is closed")
        batch = self._batch
        if batch is None:
            batch = self._batch = _Batch()
            loop = asyncio.get_running_loop()
            if self.timeout is not None:  # from the first publish, for all the batch's
                batch.timer = loop.call_later(self.timeout, self._expire, batch)
            sending = loop.create_task(self._send(batch))
            self._sending.add(sending)
            sending.add_done_callback(self._sending.discard)
        confirmation: asyncio.Future[ConfirmationFrameType] = self.channel.create_future()
        batch.publishes.append(_Publish(routing_key, body, properties, confirmation))
        batch.waiting += 1
        try:
            return await confirmation
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if batch.expired and current is not None and not current.cancelling():
                raise TimeoutError("the broker did not confirm the publish in time") from None
            raise
        finally:
            batch.waiting -= 1
            if batch.waiting == 0 and batch is not self._batch:  # all answered, none to come
                self._stop_timer(batch)
            message_id = properties.message_id
            tags = self.channel.message_id_delivery_tag
            if message_id is not None and message_id in tags:
                del tags[message_id]

    async def _send(self, batch: _Batch) -> None:
        """Runs one turn after the batch's first publish: every publish of that turn is in."""
        try:
            async with self.channel.lock:
                if self._batch is batch:
                    self._batch = None  # publishes from now on make the next batch
                if batch.waiting == 0:  # every caller was cancelled meanwhile
                    self._stop_timer(batch)
                live = [p for p in batch.publishes if not p.confirmation.done()]
                if live:
                    await self._write(live)
        except BaseException as exc:  # each caller gets why its message did not go
            if self._batch is batch:
                self._batch = None
            reason = exc if isinstance(exc, Exception) else ChannelInvalidStateError(repr(exc))
            for publish in batch.publishes:
                if not publish.confirmation.done():
                    publish.confirmation.set_exception(reason)
            if not isinstance(exc, Exception):
                raise

    async def _write(self, publishes: Sequence[_Publish]) -> None:
        """Number `publishes`, register their confirms, and queue them as one buffer.

        Under the channel's lock, as `basic_publish` numbers its own: the delivery
        tags are handed out in the order the frames reach the write queue, which
        is the order the broker counts them. If they never reach it, the tags are
        taken back.
        """
        channel = self.channel
        if channel.is_closed:
            raise ChannelInvalidStateError(f"{channel!r} is closed")
        encoded: list[tuple[_Publish, bytes]] = []
        for publish in publishes:
            try:
                encoded.append((publish, self._encode(publish)))
            except Exception as exc:  # noqa: BLE001 - a message pamqp cannot encode fails alone
                publish.confirmation.set_exception(exc)
        if not encoded:
            return
        first = channel.delivery_tag + 1
        for tag, (publish, _) in enumerate(encoded, first):
            channel.confirmations[tag] = publish.confirmation
            if publish.properties.message_id is not None:
                channel.message_id_delivery_tag[publish.properties.message_id] = tag
        channel.delivery_tag += len(encoded)
        payload = b"".join(frames for _, frames in encoded)
        try:
            await channel.write_queue.put(ChannelFrame(payload=payload, should_close=False))
        except BaseException:
            channel.delivery_tag -= len(encoded)
            for tag in range(first, first + len(encoded)):
                channel.confirmations.pop(tag, None)
            raise

    def _encode(self, publish: _Publish) -> bytes:
        number = self.channel.number
        body = publish.body
        parts = [
            self._method_frame(publish.routing_key),
            content_header(number, len(body), publish.properties),
        ]
        limit = self.channel.max_content_size
        for start in range(0, len(body), limit):
            parts.append(pamqp.frame.marshal(ContentBody(body[start : start + limit]), number))
        return b"".join(parts)

    def _method_frame(self, routing_key: str) -> bytes:
        frame = self._method_frames.get(routing_key)
        if frame is None:
            method = spec.Basic.Publish(exchange="", routing_key=routing_key, mandatory=True)
            frame = self._method_frames[routing_key] = pamqp.frame.marshal(
                method, self.channel.number
            )
        return frame

    @staticmethod
    def _stop_timer(batch: _Batch) -> None:
        """Nor keep the batch's bodies until the timer would fire."""
        if batch.timer is not None:
            batch.timer.cancel()

    @staticmethod
    def _expire(batch: _Batch) -> None:
        batch.expired = True
        for publish in batch.publishes:
            publish.confirmation.cancel()  # a no-op on those already settled
