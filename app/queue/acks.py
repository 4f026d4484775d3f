"""Acks of one RabbitMQ consumer channel, sent as few frames as is safe.

Jobs finish out of order, so a delivery is acked on its own when it is
settled — but the acks of one event-loop turn leave together, and where
every delivery up to a tag is settled, as ONE `basic.ack(tag, multiple=True)`
frame. That is safe only up to the lowest delivery still unsettled: a
multiple ack covers every earlier tag on the channel, and one of them may be
a job still running. Tags arrive in order and each delivery is registered
(`delivered`) before anything later can be acked, so "every tag up to t is
settled" is exactly "t is below the lowest unsettled tag".

An ack is sent only after the job's outcome is recorded (the consumer's rule);
batching delays it by at most one loop turn. An ack lost with its channel
costs a redelivery, which the consumer recognises from the record.
"""

from __future__ import annotations

import asyncio
import logging

from aiormq.abc import AbstractChannel

from app.queue.amqp_link import AMQP_ERRORS, describe

log = logging.getLogger("keel.queue")


class ChannelAcks:
    def __init__(self, channel: AbstractChannel) -> None:
        self.channel = channel
        self._unsettled: set[int] = set()  # delivered to us, neither acked nor nacked
        self._acked: list[int] = []  # acked since the last flush
        self._flushing: asyncio.Task[None] | None = None
        self.frames = 0  # ack frames sent
        self.acks = 0  # deliveries acked

    def delivered(self, tag: int) -> None:
        self._unsettled.add(tag)

    def released(self, tag: int) -> None:
        """Settled otherwise (a nack sent by the caller)."""
        self._unsettled.discard(tag)

    def ack(self, tag: int) -> None:
        """Ack `tag` with this turn's others (the frame leaves at the end of the turn)."""
        self._acked.append(tag)
        if self._flushing is None:
            self._flushing = asyncio.get_running_loop().create_task(
                self._flush(), name="keel.queue.acks"
            )

    def frames_for(self, acked: list[int]) -> list[tuple[int, bool]]:
        """(tag, multiple) frames that ack `acked`; updates what is unsettled. Pure."""
        acked = sorted(acked)
        self._unsettled.difference_update(acked)
        floor = min(self._unsettled, default=None)
        covered = [tag for tag in acked if floor is None or tag < floor]
        frames: list[tuple[int, bool]] = []
        if len(covered) > 1:
            frames.append((covered[-1], True))
        elif covered:
            frames.append((covered[0], False))
        frames.extend((tag, False) for tag in acked[len(covered) :])
        return frames

    async def _flush(self) -> None:
        try:
            while self._acked:
                acked, self._acked = self._acked, []
                for tag, multiple in self.frames_for(acked):
                    try:
                        await self.channel.basic_ack(tag, multiple=multiple, wait=False)
                    except AMQP_ERRORS as exc:
                        # The channel is gone and the broker requeues what it held:
                        # those jobs are delivered again and skipped from their records.
                        log.info("acks lost with their channel: %s", describe(exc))
                        return
                    self.frames += 1
                self.acks += len(acked)
        finally:
            self._flushing = None

    async def close(self) -> None:
        """Send what is still to be sent."""
        while (flushing := self._flushing) is not None:
            await asyncio.shield(flushing)
