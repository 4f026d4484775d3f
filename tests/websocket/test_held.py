"""The held publications: order kept, sent once the sender can, bounded, dropped loudly."""

from __future__ import annotations

import asyncio

import pytest

from app.websocket import held
from app.websocket.held import HeldPublications
from tests.support.polling import eventually


class Sender:
    """Numbers what it sends while `up`; refuses otherwise."""

    def __init__(self) -> None:
        self.up = False
        self.sent: list[tuple[str, bytes]] = []

    async def __call__(self, channel: str, body: bytes) -> bool:
        if self.up:
            self.sent.append((channel, body))
        return self.up


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(held, "RETRY_INTERVAL", 0.01)


async def test_sent_at_once_while_the_sender_can() -> None:
    sender = Sender()
    sender.up = True
    queue = HeldPublications(sender, lambda c, b: pytest.fail("no overflow"))
    await queue.publish("c", b"1")
    assert (sender.sent, len(queue)) == ([("c", b"1")], 0)


async def test_held_while_it_cannot_then_sent_in_order_by_the_background_task() -> None:
    sender = Sender()
    queue = HeldPublications(sender, lambda c, b: pytest.fail("no overflow"))
    async with queue.running():
        for n in range(3):
            await queue.publish("c", str(n).encode())
        sender.up = True
        await queue.publish("c", b"3")  # queued behind the held ones, not sent first
        await eventually(lambda: len(queue) == 0, "the held messages to be sent")
    assert sender.sent == [("c", str(n).encode()) for n in range(4)]
    assert (queue.held_total, queue.sent_late) == (4, 4)


async def test_beyond_the_limit_a_publication_overflows() -> None:
    overflowed: list[tuple[str, bytes]] = []
    queue = HeldPublications(Sender(), lambda c, b: overflowed.append((c, b)), limit=2)
    for n in range(3):
        await queue.publish("c", str(n).encode())
    assert (len(queue), overflowed, queue.overflowed) == (2, [("c", b"2")], 1)


async def test_stopping_sends_what_it_can_and_drops_the_rest_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sender = Sender()
    queue = HeldPublications(sender, lambda c, b: None)
    async with queue.running():
        await queue.publish("c", b"lost")
    assert len(queue) == 0
    assert "1 websocket message(s) held (redis unreachable): dropped" in caplog.text

    queue = HeldPublications(sender, lambda c, b: None)
    async with queue.running():
        await queue.publish("c", b"kept")
        sender.up = True
        await asyncio.sleep(0)  # stopping before the task's next try: the last flush sends it
    assert sender.sent == [("c", b"kept")]


async def test_held_messages_wait_until_may_flush_says_so() -> None:
    sender = Sender()
    sender.up = True
    ready = False
    queue = HeldPublications(sender, lambda c, b: None, may_flush=lambda: ready)
    queue.hold("c", b"waits")
    async with queue.running():
        await asyncio.sleep(0.05)  # several retry intervals
        assert sender.sent == []
        ready = True
        await eventually(lambda: len(queue) == 0, "the held message to be sent")
    assert sender.sent == [("c", b"waits")]
