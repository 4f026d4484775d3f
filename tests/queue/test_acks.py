"""Batched acks on a RabbitMQ consumer channel (`app.queue.acks`): a multiple ack never
covers a delivery still unsettled. The frame choice is pure; one test runs it on the
machine's broker and checks what the broker kept. And the broker link's watch stays
quiet while nothing happens."""

from __future__ import annotations

import asyncio
import uuid

import aiormq
from pamqp import commands as spec

from app.queue.acks import ChannelAcks
from app.queue.rabbitmq import RabbitQueue
from app.queue.topology import Topology
from tests.queue.test_backend_contract import amqp


class _NoChannel:
    is_closed = False


def acks_with(*delivered: int) -> ChannelAcks:
    acks = ChannelAcks(_NoChannel())  # type: ignore[arg-type]  # frames_for sends nothing
    for tag in delivered:
        acks.delivered(tag)
    return acks


def test_acks_up_to_the_lowest_unsettled_delivery_are_one_multiple_ack() -> None:
    acks = acks_with(1, 2, 3, 4, 5)
    assert acks.frames_for([2, 1, 3]) == [(3, True)]
    assert acks.frames_for([5]) == [(5, False)]  # 4 still runs: 5 alone
    assert acks.frames_for([4]) == [(4, False)]


def test_an_ack_above_a_running_delivery_never_covers_it() -> None:
    acks = acks_with(1, 2, 3, 4)
    assert acks.frames_for([2, 3, 4]) == [(2, False), (3, False), (4, False)]
    assert acks.frames_for([1]) == [(1, False)]


def test_a_released_delivery_does_not_hold_the_others_back() -> None:
    acks = acks_with(1, 2, 3)
    acks.released(1)  # nacked back to the queue by its caller
    assert acks.frames_for([2, 3]) == [(3, True)]


async def test_batched_acks_settle_exactly_what_was_acked_on_the_broker(amqp_url: str) -> None:
    queue = f"keel-test-acks-{uuid.uuid4().hex[:8]}"
    connection = await aiormq.connect(amqp_url)
    try:
        channel = await connection.channel()
        await channel.queue_declare(queue, durable=True, arguments={"x-queue-type": "quorum"})
        for n in range(10):
            await channel.basic_publish(str(n).encode(), routing_key=queue)
        consumer = await connection.channel()
        await consumer.basic_qos(prefetch_count=10)
        acks = ChannelAcks(consumer)
        got: dict[int, int] = {}
        arrived = asyncio.Event()

        async def on_message(message: aiormq.abc.DeliveredMessage) -> None:
            assert isinstance(message.delivery, spec.Basic.Deliver)
            tag = message.delivery.delivery_tag
            assert tag is not None
            acks.delivered(tag)
            got[int(message.body)] = tag
            if len(got) == 10:
                arrived.set()

        ok = await consumer.basic_consume(queue, on_message)
        await asyncio.wait_for(arrived.wait(), 10)
        # Settle out of order: everything but body 4, which "still runs".
        for n in (9, 0, 1, 2, 3, 5, 6, 7, 8):
            acks.ack(got[n])
        await acks.close()
        assert acks.acks == 9
        assert acks.frames < 9  # 0..3 left as one multiple ack
        assert ok.consumer_tag is not None
        await consumer.basic_cancel(ok.consumer_tag)
        await consumer.close()  # the unacked one goes back to the queue, and only it
        checker = await connection.channel()
        for _ in range(50):
            declared = await checker.queue_declare(queue, passive=True)
            if declared.message_count == 1:
                break
            await asyncio.sleep(0.05)
        assert declared.message_count == 1
        left = await checker.basic_get(queue, no_ack=True)
        assert left.body == b"4"
        await checker.queue_delete(queue)
    finally:
        await connection.close()


async def test_an_idle_broker_link_checks_the_broker_only_every_few_seconds(
    amqp_url: str, queue_name: str
) -> None:
    """The watch wakes on a lost connection, channel or consumer — not on its own
    observers, which it cancels after each round (once, they woke it at once: a loop of
    broker checks that kept a core a third busy while idle)."""
    backend = RabbitQueue(amqp(amqp_url), Topology(queue_name), prefetch=4, delivery_limit=10)
    checks = 0
    check = backend.link._check

    async def counted() -> None:
        nonlocal checks
        checks += 1
        await check()

    backend.link._check = counted  # type: ignore[method-assign]
    await backend.open()
    try:
        await backend.start_consuming()
        await asyncio.sleep(1.5)
        assert backend.consuming
        assert checks <= 2, f"{checks} broker checks in 1.5 s"
    finally:
        await backend.close()
