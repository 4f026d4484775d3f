"""One contract, two backends: the embedded SQLite queue and RabbitMQ (see app/queue/backend.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from app.config import AmqpSettings
from app.core.config_schema import SecretUrl
from app.queue.backend import Delivery, QueueBackend, QueueUnavailable
from app.queue.embedded import EmbeddedQueue
from app.queue.message import JobMessage
from app.queue.rabbitmq import RabbitQueue
from app.queue.topology import Topology
from tests.support.services import AMQP_URL, free_port

MakeBackend = Callable[..., Awaitable[QueueBackend]]
LEASE = 0.5


def message(job_id: str = "job-1", attempt: int = 1) -> JobMessage:
    return JobMessage(job_id, "demo.echo", {"n": job_id}, attempt, max_attempts=3)


def amqp(url: str = AMQP_URL, **overrides: float) -> AmqpSettings:
    settings = {"connect_timeout": 2.0, "publish_timeout": 2.0, **overrides}
    return AmqpSettings(url=SecretUrl(url), **settings)  # type: ignore[arg-type]


@pytest.fixture
async def make_backend(
    backend_kind: str, queue_name: str, tmp_path: Path
) -> AsyncIterator[MakeBackend]:
    """`await make_backend()`: an opened backend on this test's queue (more than one
    may be made: they share the queue, as two processes would); all closed after."""
    opened: list[QueueBackend] = []

    async def make(owner: str = "a") -> QueueBackend:
        backend: QueueBackend
        if backend_kind == "embedded":
            backend = EmbeddedQueue(
                tmp_path / "queue.db", queue_name, owner=owner, lease=LEASE, poll_interval=0.05
            )
        else:
            backend = RabbitQueue(amqp(), Topology(queue_name), prefetch=4, delivery_limit=10)
        await backend.open()
        opened.append(backend)
        return backend

    yield make
    for backend in reversed(opened):
        await backend.close()


async def receive(backend: QueueBackend, timeout: float = 5.0) -> Delivery:
    async with asyncio.timeout(timeout):
        return await backend.receive()


async def nothing_within(backend: QueueBackend, seconds: float) -> None:
    with pytest.raises(TimeoutError):
        await receive(backend, seconds)


async def test_publish_receive_ack(make_backend: MakeBackend) -> None:
    backend = await make_backend()
    assert backend.connected
    await backend.publish(message("a"))
    await backend.publish(message("b"))
    assert (await backend.stats()).depth == 2
    await backend.start_consuming()
    first, second = await receive(backend), await receive(backend)
    assert sorted([first.message, second.message], key=lambda m: m.id) == [
        message("a"),
        message("b"),
    ]
    assert first.redeliveries == 0
    await first.ack()
    await second.ack()
    await nothing_within(backend, 0.3)
    stats = await backend.stats()
    assert (stats.depth, stats.dead) == (0, 0)
    assert stats.consumers >= 1


async def test_a_delayed_message_is_never_delivered_early(make_backend: MakeBackend) -> None:
    backend = await make_backend()
    await backend.start_consuming()
    published = time.monotonic()
    await backend.publish(message("later"), delay=0.4)
    await backend.publish(message("now"))
    assert (await receive(backend)).message.id == "now"
    later = await receive(backend)
    assert later.message.id == "later"
    assert time.monotonic() - published >= 0.4
    await later.ack()


async def test_retry_publishes_the_next_attempt_after_its_delay(make_backend: MakeBackend) -> None:
    backend = await make_backend()
    await backend.start_consuming()
    await backend.publish(message("r"))
    first = await receive(backend)
    started = time.monotonic()
    await first.retry(first.message.next_attempt(), 0.3)
    again = await receive(backend)
    assert time.monotonic() - started >= 0.3
    assert again.message == message("r", attempt=2)
    assert again.redeliveries == 0  # a new message, not a redelivery
    await again.ack()
    await nothing_within(backend, 0.3)


async def test_bury_moves_to_the_dead_queue_with_its_reason(make_backend: MakeBackend) -> None:
    backend = await make_backend()
    await backend.start_consuming()
    await backend.publish(message("d"))
    delivery = await receive(backend)
    await delivery.bury(delivery.message, "it broke")
    await nothing_within(backend, 0.3)
    (letter,) = await backend.dead_letters(10)
    assert (letter.message, letter.reason) == (message("d"), "it broke")
    assert (await backend.stats()).dead == 1
    assert len(await backend.dead_letters(10)) == 1  # listing leaves them in place


async def test_released_deliveries_come_again(make_backend: MakeBackend) -> None:
    backend = await make_backend()
    await backend.start_consuming()
    await backend.publish(message("x"))
    delivery = await receive(backend)
    await delivery.release()
    again = await receive(backend)
    assert again.message == message("x")
    assert again.redeliveries == 0  # a return is no failed delivery
    await again.ack()


async def test_a_delivery_released_again_and_again_is_never_taken_for_poison(
    make_backend: MakeBackend,
) -> None:
    """Returned more times than the delivery limit (10 here): still delivered, never dead.

    A consumer returns a job whose record's shard is down, once a second until
    the shard is back, and every job it holds at a shutdown: none of these may
    spend the job's deliveries (RabbitMQ's quorum queue dead-letters a message
    nacked `x-delivery-limit` times).
    """
    backend = await make_backend()
    await backend.start_consuming()
    await backend.publish(message("patient"))
    for _ in range(12):
        delivery = await receive(backend)
        assert (delivery.message.id, delivery.redeliveries) == ("patient", 0)
        await delivery.release()
    last = await receive(backend)
    assert last.message == message("patient")
    await last.ack()
    assert (await backend.stats()).dead == 0


async def test_an_unsettled_delivery_goes_to_another_consumer_when_its_own_dies(
    make_backend: MakeBackend,
) -> None:
    dying = await make_backend("dying")
    await dying.start_consuming()
    await dying.publish(message("orphan"))
    taken = await receive(dying)
    assert taken.message.id == "orphan"
    survivor = await make_backend("survivor")
    await survivor.start_consuming()
    await nothing_within(survivor, 0.2)  # still held by the first
    await _die(dying)
    again = await receive(survivor, timeout=LEASE + 5)
    assert again.message == message("orphan")
    assert again.redeliveries == 1  # it counts towards the poison limit
    await again.ack()


async def _die(backend: QueueBackend) -> None:
    """Stop as a killed process would: nothing settled, nothing said."""
    if isinstance(backend, RabbitQueue):
        await backend.close()  # the broker requeues what the connection held
    else:
        assert isinstance(backend, EmbeddedQueue)
        backend._stop.set()  # no more lease renewals; the claim just runs out


async def test_stop_consuming_returns_buffered_and_keeps_received_valid(
    make_backend: MakeBackend,
) -> None:
    backend = await make_backend()
    await backend.start_consuming()
    for name in ("a", "b", "c"):
        await backend.publish(message(name))
    held = await receive(backend)
    await backend.stop_consuming()
    with pytest.raises(QueueUnavailable):
        await receive(backend)
    await held.ack()  # still valid after stopping
    other = await make_backend("other")
    await other.start_consuming()
    rest = {(await receive(other)).message.id for _ in range(2)}
    assert rest == {"a", "b", "c"} - {held.message.id}


async def test_requeue_dead_moves_what_the_callback_takes_and_purge_drops_the_rest(
    make_backend: MakeBackend,
) -> None:
    backend = await make_backend()
    await backend.start_consuming()
    for name in ("d1", "d2", "d3"):
        await backend.publish(message(name))
        delivery = await receive(backend)
        await delivery.bury(delivery.message, f"{name} died")
    offered: list[str] = []

    async def requeue(dead: JobMessage) -> bool:
        offered.append(dead.id)
        if dead.id == "d3":
            return False  # not taken: stays dead
        await backend.publish(dead.first_attempt())
        return True

    assert await backend.requeue_dead(frozenset({"d1", "d3"}), requeue) == 1
    assert sorted(offered) == ["d1", "d3"]
    back = await receive(backend)
    assert back.message == message("d1")
    await back.ack()
    assert sorted(letter.message.id for letter in await backend.dead_letters(10)) == ["d2", "d3"]
    assert await backend.requeue_dead(None, requeue) == 1  # d2 (d3 refused again)
    assert (await receive(backend)).message.id == "d2"
    assert await backend.purge_dead() == 1
    assert await backend.dead_letters(10) == []


async def test_rabbitmq_down_publish_fails_fast_and_the_backend_reports_it(
    queue_name: str,
) -> None:
    backend = RabbitQueue(
        amqp(f"amqp://guest:guest@127.0.0.1:{free_port()}/", connect_timeout=0.5),
        Topology(queue_name),
        prefetch=1,
        delivery_limit=3,
    )
    started = time.monotonic()
    await backend.open()  # does not wait for the broker: retries in the background
    try:
        assert not backend.connected
        assert "refused" in backend.last_error.lower() or backend.last_error
        with pytest.raises(QueueUnavailable, match="not connected"):
            await backend.publish(message())
        with pytest.raises(QueueUnavailable):
            await backend.stats()
        assert time.monotonic() - started < 2
    finally:
        await backend.close()
