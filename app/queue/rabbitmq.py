"""The RabbitMQ backend through aiormq (topology: `app.queue.topology`; the supervised
connection under it: `app.queue.amqp_link`).

Publishing is `mandatory` with publisher confirms awaited (`publish_timeout`):
`publish` returns only once the broker has the message on disk, and a
message that no queue would take is returned and fails instead of vanishing.
The publishes of one loop turn leave as one write (`app.queue.publish_batch`).
A publish that times out also forces a reconnect: a broker that stopped
answering (a dead route) is otherwise only noticed by heartbeats.

Deliveries are handed to the consumer through a local buffer (at most
`prefetch` unacked); one whose channel died on the way is skipped — the
broker delivers it again on the new connection. Acks of one loop turn leave
together, as one multiple ack where that is safe (`app.queue.acks`).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

from aiormq import Channel
from aiormq.abc import AbstractConnection, DeliveredMessage
from aiormq.exceptions import PublishError
from pamqp import commands as spec

from app.config import AmqpSettings
from app.queue.acks import ChannelAcks
from app.queue.amqp_link import AMQP_ERRORS, BrokerLink, describe
from app.queue.backend import (
    DeadLetter,
    Delivery,
    QueueBackend,
    QueueStats,
    QueueUnavailable,
    Requeue,
)
from app.queue.message import BadMessage, JobMessage, delay_bucket_ms
from app.queue.publish_batch import PublishBatcher
from app.queue.topology import DELAY_QUEUE_SPARE_MS, QueueType, Topology

log = logging.getLogger("keel.queue")

REASON_HEADER = "x-keel-reason"
_MAX_REASON = 1000
# Listing dead messages newest first reads the queue from its head (the
# oldest): at most this many are looked at.
DEAD_SCAN_LIMIT = 10_000


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return value if isinstance(value, str) else ""


class _BrokerDelivery(Delivery):
    def __init__(
        self,
        backend: RabbitQueue,
        acks: ChannelAcks,
        tag: int,
        message: JobMessage,
        redeliveries: int,
    ) -> None:
        self._backend = backend
        self._acks = acks
        self.channel = acks.channel
        self._tag = tag
        self.message = message
        self.redeliveries = redeliveries

    async def ack(self) -> None:
        if self.channel.is_closed:
            raise QueueUnavailable(f"cannot ack job {self.message.id}: its channel is closed")
        self._acks.ack(self._tag)  # with this turn's others (app/queue/acks.py)

    async def retry(self, message: JobMessage, delay: float) -> None:
        await self._backend.publish(message, delay)
        await self.ack()

    async def bury(self, message: JobMessage, reason: str) -> None:
        await self._backend.publish_dead(message, reason)
        await self.ack()

    async def release(self) -> None:
        """Back to the queue as a fresh copy: published (confirmed), then this one acked.

        Not a nack: a quorum queue counts every nack towards `x-delivery-limit`, so a
        job returned at each shutdown, or while its shard was down, would be
        dead-lettered as poison without ever having failed. Only when the copy cannot
        be published is it nacked (that return counts). A channel already gone has
        requeued it anyway; the copy is then a duplicate, which the record settles.
        """
        try:
            await self._backend.publish(self.message)
        except QueueUnavailable:
            self._acks.released(self._tag)
            with contextlib.suppress(*AMQP_ERRORS):
                await self.channel.basic_nack(self._tag, requeue=True)
            return
        with contextlib.suppress(QueueUnavailable):
            await self.ack()


class RabbitQueue(QueueBackend):
    kind: ClassVar[str] = "rabbitmq"

    def __init__(
        self,
        settings: AmqpSettings,
        topology: Topology,
        *,
        prefetch: int,
        delivery_limit: int,
        client_name: str = "keel",
    ) -> None:
        self.settings = settings
        self.topology = topology
        self.link = BrokerLink(
            settings,
            topology,
            prefetch=prefetch,
            delivery_limit=delivery_limit,
            client_name=client_name,
            on_message=self._on_message,
        )
        self._deliveries: asyncio.Queue[_BrokerDelivery | None] = asyncio.Queue()
        self._declared: dict[str, float] = {}  # delay queue -> when last declared
        self._acks: ChannelAcks | None = None  # the consumer channel's
        self._batcher: PublishBatcher | None = None  # the publisher channel's
        self._publishes = itertools.count()

    @property
    def connected(self) -> bool:
        return self.link.ready

    @property
    def last_error(self) -> str:
        return self.link.error

    @property
    def consuming(self) -> bool:
        return self.link.ready and self.link.consumer_tag is not None

    @property
    def queue_type(self) -> QueueType | None:
        return self.link.queue_type

    @property
    def consumer_count(self) -> int:
        return self.link.consumer_count

    @property
    def connects(self) -> int:
        return self.link.connects

    def on_connected(self, callback: Callable[[], None]) -> None:
        self.link.on_connected(callback)

    async def open(self) -> None:
        self.link.on_connected(self._declared.clear)
        await self.link.open()

    async def close(self) -> None:
        if self._acks is not None:
            await self._acks.close()
        await self.link.close()

    # --- publishing ------------------------------------------------------------------

    async def publish(self, message: JobMessage, delay: float = 0.0) -> None:
        ms = delay_bucket_ms(delay) if delay > 0 else 0
        if ms == 0:
            await self._publish(self.topology.main, message)
            return
        queue = await self._delay_queue(ms)
        try:
            await self._publish(queue, message)
        except QueueUnavailable:
            if queue in self._declared:
                raise
            # Returned: the delay queue was gone after all. Declare it and try once more.
            await self._publish(await self._delay_queue(ms), message)

    async def publish_dead(self, message: JobMessage, reason: str) -> None:
        await self._publish(self.topology.dead, message, {REASON_HEADER: reason[:_MAX_REASON]})

    async def _delay_queue(self, ms: int) -> str:
        """The delay queue for `ms`, declared again often enough that it never expires
        while it may hold a message (see `topology.DELAY_QUEUE_SPARE_MS`)."""
        name = self.topology.delay(ms)
        now = time.monotonic()
        last = self._declared.get(name)
        if last is None or now - last > DELAY_QUEUE_SPARE_MS / 2000:
            kind = self.link.queue_type or "classic"
            try:
                await self.link.require_publisher().queue_declare(
                    name,
                    durable=True,
                    arguments=self.topology.delay_arguments(kind, ms),
                    timeout=self.settings.connect_timeout,
                )
            except AMQP_ERRORS as exc:
                raise QueueUnavailable(f"cannot declare {name}: {describe(exc)}") from exc
            self._declared[name] = now
        return name

    async def _publish(
        self, queue: str, message: JobMessage, headers: dict[str, Any] | None = None
    ) -> None:
        channel = self.link.require_publisher()
        properties = spec.Basic.Properties(
            delivery_mode=2,  # persistent
            content_type="application/json",
            # Unique per publish: aiormq matches returns to publishes by message_id.
            message_id=f"{message.id}:{message.attempt}:{next(self._publishes)}",
            headers=headers or None,  # none at all: the header frame is encoded quicker
        )
        batcher = self._batcher
        if batcher is None or batcher.channel is not channel:  # a new publisher channel
            assert isinstance(channel, Channel)
            batcher = self._batcher = PublishBatcher(channel, self.settings.publish_timeout)
        try:
            confirmation = await batcher.publish(queue, message.encode(), properties)
        except PublishError as exc:
            self._declared.pop(queue, None)
            if not self.topology.is_delay(queue):
                self.link.request_reconnect(f"{queue} refused a message: re-declaring")
            raise QueueUnavailable(f"{queue} did not take the message: {exc}") from exc
        except TimeoutError as exc:
            self.link.request_reconnect("a publish was not confirmed in time")
            raise QueueUnavailable(
                f"no confirm within {self.settings.publish_timeout}s from RabbitMQ"
            ) from exc
        except AMQP_ERRORS as exc:
            raise QueueUnavailable(f"publish failed: {describe(exc)}") from exc
        if not isinstance(confirmation, spec.Basic.Ack):
            raise QueueUnavailable(f"RabbitMQ refused the message ({confirmation!r})")

    # --- consuming -------------------------------------------------------------------

    async def start_consuming(self) -> None:
        await self.link.start_consuming()

    async def stop_consuming(self) -> None:
        await self.link.stop_consuming()
        while not self._deliveries.empty():
            delivery = self._deliveries.get_nowait()
            if delivery is not None:
                await delivery.release()
        self._deliveries.put_nowait(None)  # wakes a waiting receive()

    async def _on_message(self, delivered: DeliveredMessage) -> None:
        channel = delivered.channel
        delivery = delivered.delivery
        if not isinstance(delivery, spec.Basic.Deliver) or delivery.delivery_tag is None:
            return
        tag = delivery.delivery_tag
        if not self.link.want_consume:
            with contextlib.suppress(*AMQP_ERRORS):
                await channel.basic_nack(tag, requeue=True)
            return
        try:
            message = JobMessage.decode(delivered.body)
        except BadMessage as exc:
            log.error("dead-lettering an unreadable message on %s: %s", self.topology.main, exc)
            with contextlib.suppress(*AMQP_ERRORS):
                # requeue=False on the main queue dead-letters it to <name>.dead.
                await channel.basic_nack(tag, requeue=False)
            return
        headers = delivered.header.properties.headers or {}
        count = headers.get("x-delivery-count")  # quorum queues count returns
        redeliveries = count if isinstance(count, int) else int(bool(delivery.redelivered))
        acks = self._acks
        if acks is None or acks.channel is not channel:  # a new consumer channel
            acks = self._acks = ChannelAcks(channel)
        acks.delivered(tag)
        self._deliveries.put_nowait(_BrokerDelivery(self, acks, tag, message, redeliveries))

    async def receive(self) -> Delivery:
        while True:
            if not self.link.want_consume:
                raise QueueUnavailable("not consuming")
            delivery = await self._deliveries.get()
            if delivery is None:
                continue
            if delivery.channel.is_closed:
                continue  # its channel is gone: the broker delivers it again
            return delivery

    # --- state and the dead queue ----------------------------------------------------

    async def stats(self) -> QueueStats:
        publisher = self.link.require_publisher()
        timeout = self.settings.connect_timeout
        try:
            main = await publisher.queue_declare(self.topology.main, passive=True, timeout=timeout)
            dead = await publisher.queue_declare(self.topology.dead, passive=True, timeout=timeout)
        except AMQP_ERRORS as exc:
            raise QueueUnavailable(f"cannot read queue stats: {describe(exc)}") from exc
        return QueueStats(
            depth=int(main.message_count or 0),
            dead=int(dead.message_count or 0),
            consumers=int(main.consumer_count or 0),
        )

    async def _scan_dead(
        self, take: Callable[[DeliveredMessage], Awaitable[bool]], limit: int | None = None
    ) -> int:
        """Get each dead message once on a channel of its own; ack those `take` accepts.

        The others stay unacked while the scan runs (so a get never returns one
        twice) and go back to the dead queue when the channel closes — also if
        this process dies mid-scan.
        """
        connection = self.link.connection
        if connection is None or not self.connected or connection.is_closed:
            raise QueueUnavailable(f"RabbitMQ is not connected ({self.last_error or 'connecting'})")
        timeout = self.settings.connect_timeout
        taken = left = 0
        try:
            channel = await connection.channel(publisher_confirms=False)
            try:
                declared = await channel.queue_declare(
                    self.topology.dead, passive=True, timeout=timeout
                )
                before = int(declared.message_count or 0)
                # Until the queue is empty, not for its message count: messages an earlier
                # scan refused may still be on their way back when the count is read. A
                # job seen once (requeued, and dead again meanwhile) is left alone.
                seen: set[str | bytes] = set()
                gets = itertools.count() if limit is None else range(limit)
                for _ in gets:
                    got = await channel.basic_get(self.topology.dead, timeout=timeout)
                    delivery = got.delivery
                    if not isinstance(delivery, spec.Basic.GetOk):
                        break  # GetEmpty: nothing (more) there
                    identity = _job_id(got.body)
                    if identity in seen:
                        continue  # unacked: back in the queue when the channel closes
                    seen.add(identity)
                    if await take(got):
                        assert delivery.delivery_tag is not None
                        await channel.basic_ack(delivery.delivery_tag)
                        taken += 1
                    else:
                        left += 1
            finally:
                with contextlib.suppress(*AMQP_ERRORS):
                    async with asyncio.timeout(timeout):
                        await channel.close()
            await self._until_back(connection, min(left, before))
        except AMQP_ERRORS as exc:
            raise QueueUnavailable(f"dead queue: {describe(exc)}") from exc
        return taken

    async def _until_back(self, connection: AbstractConnection, left: int) -> None:
        """Wait (briefly) until the messages a scan left are back in the dead queue: a quorum
        queue takes them back after the channel's close is answered, and the next scan
        (a listing right after a requeue) must see them."""
        if left <= 0:
            return
        timeout = self.settings.connect_timeout
        channel = await connection.channel(publisher_confirms=False)
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(timeout, 2.0)):
                    while True:
                        declared = await channel.queue_declare(self.topology.dead, passive=True)
                        if int(declared.message_count or 0) >= left:
                            return
                        await asyncio.sleep(0.01)
        finally:
            with contextlib.suppress(*AMQP_ERRORS):
                async with asyncio.timeout(timeout):
                    await channel.close()

    @staticmethod
    def _reason(delivered: DeliveredMessage) -> str:
        headers = delivered.header.properties.headers or {}
        reason = _text(headers.get(REASON_HEADER))
        if reason:
            return reason
        deaths = headers.get("x-death")
        if isinstance(deaths, list) and deaths and isinstance(deaths[0], dict):
            return f"dead-lettered by RabbitMQ: {_text(deaths[0].get('reason')) or '?'}"
        return ""

    async def dead_letters(self, limit: int) -> list[DeadLetter]:
        # A queue hands out its oldest first: keep the last `limit` seen.
        found: collections.deque[DeadLetter] = collections.deque(maxlen=limit)

        async def look(delivered: DeliveredMessage) -> bool:
            with contextlib.suppress(BadMessage):
                found.append(DeadLetter(JobMessage.decode(delivered.body), self._reason(delivered)))
            return False

        await self._scan_dead(look, DEAD_SCAN_LIMIT)
        return list(reversed(found))

    async def requeue_dead(self, job_ids: frozenset[str] | None, requeue: Requeue) -> int:
        async def take(delivered: DeliveredMessage) -> bool:
            try:
                message = JobMessage.decode(delivered.body)
            except BadMessage:
                return False
            if job_ids is not None and message.id not in job_ids:
                return False
            return await requeue(message)

        return await self._scan_dead(take)

    async def purge_dead(self, job_ids: frozenset[str] | None = None) -> int:
        if job_ids is not None:

            async def chosen(delivered: DeliveredMessage) -> bool:
                try:
                    return JobMessage.decode(delivered.body).id in job_ids
                except BadMessage:
                    return False

            return await self._scan_dead(chosen)
        publisher = self.link.require_publisher()
        try:
            purged = await publisher.queue_purge(
                self.topology.dead, timeout=self.settings.connect_timeout
            )
        except AMQP_ERRORS as exc:
            raise QueueUnavailable(f"cannot purge {self.topology.dead}: {describe(exc)}") from exc
        return int(purged.message_count or 0)


def _job_id(body: bytes) -> str | bytes:
    """A dead message's job id; its bytes when it is not a job message at all."""
    try:
        return JobMessage.decode(body).id
    except BadMessage:
        return body
