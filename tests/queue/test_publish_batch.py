"""Batched confirmed publishes (`app.queue.publish_batch`) on the machine's RabbitMQ.

Each test publishes to a quorum queue of its own and reads back what the broker
kept: every caller gets its own answer, a failure stops only the messages it
hit, and the delivery tags stay in step with the broker (a later publish on the
same channel is confirmed as itself).
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import aiormq
import pytest
from aiormq.exceptions import ChannelInvalidStateError, PublishError
from pamqp import commands as spec

from app.queue.publish_batch import PublishBatcher
from tests.support.tcp_proxy import TcpProxy

_ids = itertools.count()


def properties() -> spec.Basic.Properties:
    return spec.Basic.Properties(delivery_mode=2, message_id=f"m{next(_ids)}")


@pytest.fixture
async def queue(amqp_url: str) -> AsyncIterator[str]:
    name = f"keel-test-batch-{uuid.uuid4().hex[:8]}"
    connection = await aiormq.connect(amqp_url)
    channel = await connection.channel()
    await channel.queue_declare(name, durable=True, arguments={"x-queue-type": "quorum"})
    yield name
    await channel.queue_delete(name)
    await connection.close()


@pytest.fixture
async def channel(amqp_url: str) -> AsyncIterator[aiormq.Channel]:
    connection = await aiormq.connect(amqp_url)
    channel = await connection.channel(publisher_confirms=True)
    assert isinstance(channel, aiormq.Channel)
    yield channel
    await connection.close()


async def kept(amqp_url: str, queue: str) -> list[bytes]:
    """The bodies in `queue`, oldest first (taken out of it)."""
    connection = await aiormq.connect(amqp_url)
    try:
        channel = await connection.channel()
        bodies: list[bytes] = []
        while True:
            got = await channel.basic_get(queue, no_ack=True)
            if not isinstance(got.delivery, spec.Basic.GetOk):
                return bodies
            bodies.append(got.body)
    finally:
        await connection.close()


async def test_the_publishes_of_a_turn_are_each_confirmed_and_kept_in_order(
    amqp_url: str, queue: str, channel: aiormq.Channel
) -> None:
    batcher = PublishBatcher(channel, timeout=5.0)
    confirms = await asyncio.gather(
        *(batcher.publish(queue, str(n).encode(), properties()) for n in range(50))
    )
    assert all(isinstance(confirm, spec.Basic.Ack) for confirm in confirms)
    assert channel.delivery_tag == 50
    assert not channel.message_id_delivery_tag  # nothing left behind for returns
    assert await kept(amqp_url, queue) == [str(n).encode() for n in range(50)]


async def test_a_returned_message_fails_alone(
    amqp_url: str, queue: str, channel: aiormq.Channel
) -> None:
    batcher = PublishBatcher(channel, timeout=5.0)
    nowhere = f"keel-test-batch-missing-{uuid.uuid4().hex[:8]}"  # no such queue: returned
    outcomes = await asyncio.gather(
        batcher.publish(queue, b"a", properties()),
        batcher.publish(nowhere, b"lost", properties()),
        batcher.publish(queue, b"b", properties()),
        return_exceptions=True,
    )
    assert isinstance(outcomes[0], spec.Basic.Ack)
    assert isinstance(outcomes[1], PublishError)
    assert isinstance(outcomes[2], spec.Basic.Ack)
    assert isinstance(await batcher.publish(queue, b"c", properties()), spec.Basic.Ack)
    assert await kept(amqp_url, queue) == [b"a", b"b", b"c"]


async def test_a_caller_cancelled_before_the_write_is_left_out(
    amqp_url: str, queue: str, channel: aiormq.Channel
) -> None:
    batcher = PublishBatcher(channel, timeout=5.0)
    first = asyncio.create_task(batcher.publish(queue, b"first", properties()))
    dropped = asyncio.create_task(batcher.publish(queue, b"dropped", properties()))
    last = asyncio.create_task(batcher.publish(queue, b"last", properties()))
    await asyncio.sleep(0)  # all three have joined the batch; it is not written yet
    dropped.cancel()
    assert isinstance(await first, spec.Basic.Ack)
    assert isinstance(await last, spec.Basic.Ack)
    with pytest.raises(asyncio.CancelledError):
        await dropped
    assert channel.delivery_tag == 2  # the broker counted two publishes: so did we
    assert isinstance(await batcher.publish(queue, b"after", properties()), spec.Basic.Ack)
    assert await kept(amqp_url, queue) == [b"first", b"last", b"after"]


async def test_confirms_that_do_not_come_in_time_fail_with_timeout_error(
    amqp_url: str, queue: str
) -> None:
    target = urlsplit(amqp_url)
    async with TcpProxy(target.hostname or "127.0.0.1", target.port or 5672) as proxy:
        url = target._replace(netloc=f"guest:guest@{proxy.address}").geturl()
        connection = await aiormq.connect(url)
        try:
            channel = await connection.channel(publisher_confirms=True)
            assert isinstance(channel, aiormq.Channel)
            batcher = PublishBatcher(channel, timeout=0.3)
            await proxy.slow(1.0)
            outcomes = await asyncio.gather(
                batcher.publish(queue, b"late-1", properties()),
                batcher.publish(queue, b"late-2", properties()),
                return_exceptions=True,
            )
            assert [type(outcome) for outcome in outcomes] == [TimeoutError, TimeoutError]
            await proxy.restore()
            # The broker got them; their confirms come late (its answers already on
            # their way keep their delay) and are ignored. A new publish is confirmed
            # as itself: the tags are still in step.
            batcher.timeout = 5.0
            assert isinstance(await batcher.publish(queue, b"next", properties()), spec.Basic.Ack)
        finally:
            await connection.close()
    assert await kept(amqp_url, queue) == [b"late-1", b"late-2", b"next"]


async def test_a_publish_joining_a_batch_whose_others_were_cancelled_still_times_out(
    queue: str, channel: aiormq.Channel
) -> None:
    batcher = PublishBatcher(channel, timeout=0.3)
    async with channel.lock:  # the batch cannot be written: an RPC holds the channel
        cancelled = asyncio.create_task(batcher.publish(queue, b"gone", properties()))
        await asyncio.sleep(0)
        cancelled.cancel()
        await asyncio.sleep(0)
        joining = asyncio.create_task(batcher.publish(queue, b"late", properties()))
        await asyncio.sleep(0.5)
        assert joining.done()
    with pytest.raises(TimeoutError):
        await joining
    assert channel.delivery_tag == 0  # neither was written


async def test_a_closed_channel_fails_its_unconfirmed_publishes(
    queue: str, channel: aiormq.Channel
) -> None:
    batcher = PublishBatcher(channel, timeout=5.0)
    pending = [asyncio.create_task(batcher.publish(queue, b"x", properties())) for _ in range(3)]
    await asyncio.sleep(0)
    await channel.close()
    for task in pending:
        with pytest.raises(Exception) as caught:  # noqa: PT011 - the close reason, whatever it is
            await task
        assert not isinstance(caught.value, asyncio.CancelledError)
    with pytest.raises(ChannelInvalidStateError):
        await batcher.publish(queue, b"y", properties())


async def test_a_channel_without_confirms_is_refused(amqp_url: str) -> None:
    connection = await aiormq.connect(amqp_url)
    try:
        channel = await connection.channel(publisher_confirms=False)
        assert isinstance(channel, aiormq.Channel)
        with pytest.raises(ValueError, match="publisher confirms"):
            PublishBatcher(channel, timeout=1.0)
    finally:
        await connection.close()
