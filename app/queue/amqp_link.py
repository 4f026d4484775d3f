"""The supervised RabbitMQ connection under the RabbitMQ backend.

One connection: connect (with a timeout), declare the topology — quorum
queues, or classic durable ones where the broker refuses quorum — open a
publisher channel in confirm mode and, while consuming is wanted, a consumer
channel with `basic_qos(prefetch)`. Then watch: the connection or a channel
closing, the broker cancelling our consumer, or a periodic check finding
that the broker no longer counts a consumer on the main queue (aio-pika
#231: a "recovered" consumer that is not there) all end in a reconnect with
capped exponential backoff and jitter, which declares everything again and
consumes again. The check also refreshes the depth and consumer count that
readiness and metrics report.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable
from typing import Any

import aiormq
from aiormq.abc import AbstractChannel, AbstractConnection, ConsumerCallback
from aiormq.exceptions import AMQPError, ChannelClosed, ChannelInvalidStateError
from yarl import URL

from app.config import AmqpSettings
from app.core.background import BackgroundTask
from app.core.outage import Outage
from app.queue.backend import QueueUnavailable
from app.queue.topology import QueueType, Topology

log = logging.getLogger("keel.queue")

# What a failed broker call raises: aiormq's errors, a closed channel, the socket.
AMQP_ERRORS: tuple[type[BaseException], ...] = (
    AMQPError,
    ChannelInvalidStateError,
    ConnectionError,
    OSError,
    TimeoutError,
)
_RECONNECT_ON: tuple[type[BaseException], ...] = (*AMQP_ERRORS, QueueUnavailable)
CHECK_INTERVAL = 5.0  # seconds between consumer checks / depth refreshes


def describe(exc: BaseException) -> str:
    text = str(exc) or repr(exc)
    return f"{type(exc).__name__}: {text}" if type(exc).__name__ not in text else text


class BrokerLink:
    def __init__(
        self,
        settings: AmqpSettings,
        topology: Topology,
        *,
        prefetch: int,
        delivery_limit: int,
        client_name: str,
        on_message: ConsumerCallback,
    ) -> None:
        self.settings = settings
        self.topology = topology
        self.prefetch = prefetch
        self.delivery_limit = delivery_limit
        url = URL(settings.url.reveal())
        if "heartbeat" not in url.query:
            url = url.update_query(heartbeat=settings.heartbeat)
        if "name" not in url.query:
            url = url.update_query(name=client_name)
        self.url = url
        self._on_message = on_message
        self.queue_type: QueueType | None = None
        self.consumer_count = 0
        self.depth = 0
        self.connects = 0
        self.connection: AbstractConnection | None = None
        self.publisher: AbstractChannel | None = None
        self.consumer: AbstractChannel | None = None
        self.consumer_tag: str | None = None
        self.want_consume = False
        self.error = "not connected yet"  # what state() shows; "" while connected
        self.outage = Outage("RabbitMQ", log)
        self._ready = asyncio.Event()
        self._tried = asyncio.Event()  # the first connection attempt has ended
        self._changed = asyncio.Event()  # wakes the watch
        self._reconnect_reason = ""
        self._stop = asyncio.Event()
        self._supervisor = BackgroundTask("keel.queue.amqp", self._supervise)
        self._callbacks: list[Callable[[], None]] = []

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    def on_connected(self, callback: Callable[[], None]) -> None:
        self._callbacks.append(callback)

    async def open(self) -> None:
        self._supervisor.start()
        # Wait for the first attempt only: a broker that is down does not hold up
        # startup (jobs wait in the outbox), but a healthy one is used at once.
        await self._tried.wait()

    async def close(self) -> None:
        self._stop.set()
        self._changed.set()
        await self._supervisor.stop(grace=self.settings.connect_timeout)
        await self._disconnect()

    def require_publisher(self) -> AbstractChannel:
        channel = self.publisher
        if channel is None or channel.is_closed:
            raise QueueUnavailable(f"RabbitMQ is not connected ({self.error or 'connecting'})")
        return channel

    def request_reconnect(self, reason: str) -> None:
        if self._ready.is_set() and not self._reconnect_reason:
            self._reconnect_reason = reason
            self._changed.set()

    async def start_consuming(self) -> None:
        self.want_consume = True
        connection = self.connection
        if connection is None or not self.ready or self.consumer_tag is not None:
            return  # the supervisor consumes as soon as it (re)connects
        try:
            await self._consume(connection)
        except AMQP_ERRORS as exc:
            self.request_reconnect(f"cannot consume: {describe(exc)}")
        self._changed.set()  # the watch observes the new channel

    async def stop_consuming(self) -> None:
        """Cancel our consumer; its channel stays open so held deliveries can be settled."""
        self.want_consume = False
        channel, tag = self.consumer, self.consumer_tag
        self.consumer_tag = None
        if channel is not None and tag is not None and not channel.is_closed:
            with contextlib.suppress(*AMQP_ERRORS):
                await channel.basic_cancel(tag, timeout=self.settings.connect_timeout)

    # --- supervision ------------------------------------------------------------------

    async def _supervise(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                await self._connect()
            except _RECONNECT_ON as exc:
                failures += 1
                self.error = describe(exc)
                self.outage.failed(self.error, "retrying; accepted jobs wait in the outbox")
                await self._disconnect()
                self._tried.set()
                await self._pause(self._backoff(failures))
                continue
            failures = 0
            self.error = ""
            self.outage.recovered()
            self.connects += 1
            self._tried.set()
            log.info(
                "connected to RabbitMQ %s: %s queue %s%s",
                self.url.with_password("***") if self.url.password else self.url,
                self.queue_type,
                self.topology.main,
                f", consuming (prefetch {self.prefetch})" if self.consumer_tag else "",
            )
            for callback in self._callbacks:
                callback()
            try:
                await self._watch()
            except _RECONNECT_ON as exc:
                self.error = describe(exc)
            self._ready.clear()
            await self._disconnect()
            if not self._stop.is_set():
                self.outage.failed(self.error, "reconnecting; accepted jobs wait in the outbox")

    def _backoff(self, failures: int) -> float:
        base = min(self.settings.reconnect_max, 0.1 * 2 ** min(failures, 20))
        return float(base * random.uniform(0.5, 1.0))

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._stop.wait()

    async def _connect(self) -> None:
        async with asyncio.timeout(self.settings.connect_timeout):
            self.connection = connection = await aiormq.connect(self.url)
            await self._declare(connection)
            self.publisher = await connection.channel(publisher_confirms=True)
            if self.want_consume:
                await self._consume(connection)
            await self._check()
        self._ready.set()

    async def _declare(self, connection: AbstractConnection) -> None:
        """Declare the topology: quorum queues, else classic (the broker refuses quorum,
        or the main queue already exists as a classic queue)."""
        kinds: tuple[QueueType, ...] = (
            (self.queue_type,) if self.queue_type else ("quorum", "classic")
        )
        refused: ChannelClosed | None = None
        for kind in kinds:
            channel = await connection.channel(publisher_confirms=False)
            try:
                await channel.queue_declare(
                    self.topology.main,
                    durable=True,
                    arguments=self.topology.main_arguments(kind, self.delivery_limit),
                )
                await channel.queue_declare(
                    self.topology.dead, durable=True, arguments=self.topology.dead_arguments(kind)
                )
            except ChannelClosed as exc:  # the broker closed the channel: try the next kind
                refused = exc
                continue
            await channel.close()
            if kind == "classic" and self.queue_type is None:
                log.warning(
                    "RabbitMQ refused a quorum queue %s (%s): using classic durable queues"
                    " (at-most-once dead-lettering, no delivery limit)",
                    self.topology.main,
                    refused,
                )
            self.queue_type = kind
            return
        assert refused is not None
        raise refused

    async def _consume(self, connection: AbstractConnection) -> None:
        channel = await connection.channel(publisher_confirms=False)
        await channel.basic_qos(prefetch_count=self.prefetch)
        channel.on_consumer_cancel_callbacks.add(self._on_cancelled)
        ok = await channel.basic_consume(self.topology.main, self._on_message)
        self.consumer = channel
        self.consumer_tag = ok.consumer_tag

    def _on_cancelled(self, frame: Any) -> None:
        self.request_reconnect("the broker cancelled our consumer")

    async def _check(self) -> None:
        """Ask the broker: is our consumer counted? Also refreshes depth and consumer count."""
        declared = await self.require_publisher().queue_declare(
            self.topology.main, passive=True, timeout=self.settings.connect_timeout
        )
        self.depth = int(declared.message_count or 0)
        self.consumer_count = int(declared.consumer_count or 0)
        consumer = self.consumer
        if self.consumer_tag is not None and (
            self.consumer_count < 1 or consumer is None or consumer.is_closed
        ):
            raise QueueUnavailable(
                f"our consumer on {self.topology.main} is gone"
                f" (the broker counts {self.consumer_count})"
            )

    async def _watch(self) -> None:
        """Until the connection, a channel or our consumer is lost (or we stop)."""

        def changed(_: asyncio.Future[Any]) -> None:
            self._changed.set()

        while True:
            sources = [s for s in (self.connection, self.publisher, self.consumer) if s]
            observers = [source.closing for source in sources]
            for observer in observers:
                observer.add_done_callback(changed)
            try:
                self._changed.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(CHECK_INTERVAL):
                        await self._changed.wait()
                if self._stop.is_set():
                    return
                if self._reconnect_reason:
                    reason, self._reconnect_reason = self._reconnect_reason, ""
                    raise QueueUnavailable(reason)
                for observer in observers:
                    if observer.done():
                        exc = None if observer.cancelled() else observer.exception()
                        raise QueueUnavailable(f"closed by the broker or the network: {exc}")
                await self._check()
            finally:
                for observer in observers:
                    # Unhooked first: our own cancelling must not count as a change (it
                    # would wake the next round at once — a loop of broker checks).
                    observer.remove_done_callback(changed)
                    observer.cancel()

    async def _disconnect(self) -> None:
        self._ready.clear()
        connection, self.connection = self.connection, None
        self.publisher = self.consumer = None
        self.consumer_tag = None
        self.consumer_count = 0
        if connection is not None:
            with contextlib.suppress(*AMQP_ERRORS):
                async with asyncio.timeout(self.settings.connect_timeout):
                    await connection.close()
