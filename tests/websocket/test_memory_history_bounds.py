"""The in-process history stays within its bounds however many channels clients use."""

from __future__ import annotations

from app.websocket.memory_history import MemoryHistory
from app.websocket.position import Position
from tests.support.clock import Clock
from tests.websocket.test_bus_contract import Delivered, recorder
from tests.websocket.test_history_contract import body


def held(history: MemoryHistory) -> int:
    """The bytes the history holds, counted from its messages."""
    return sum(len(payload) for log in history._logs.values() for payload in log.entries)


async def test_channels_past_the_limit_drop_the_least_recently_used(clock: Clock) -> None:
    history = MemoryHistory(recorder([]), 10, 300.0, clock=clock, max_channels=3)
    for name in ("a", "b", "c"):
        await history.publish(name, body(name))
    epoch_a = history.channels()["a"].epoch
    await history.read("b", None)  # b is used again: c and a are older now
    await history.publish("d", body("d"))
    assert sorted(history.channels()) == ["b", "c", "d"]
    replay = await history.read("a", Position(1, epoch_a))  # a client on a reconnects
    assert replay.recovered is False
    assert replay.latest is not None
    assert (replay.latest.offset, replay.latest.epoch != epoch_a) == (0, True)
    assert sorted(history.channels()) == ["a", "b", "d"]  # a is back (new), c made room


async def test_messages_past_the_byte_limit_drop_whole_channels(clock: Clock) -> None:
    big = body("x" * 900)
    history = MemoryHistory(recorder([]), 5, 300.0, clock=clock, max_bytes=10_000)
    for n in range(30):
        await history.publish(f"chat.{n}", big)
        assert history.bytes == held(history) <= 10_000
    kept = sorted(history.channels(), key=lambda name: int(name.split(".")[1]))
    assert kept[-1] == "chat.29"
    assert [f"chat.{n}" for n in range(30 - len(kept), 30)] == kept  # the newest ones


async def test_a_channel_alone_over_the_byte_limit_keeps_its_history(clock: Clock) -> None:
    big = body("x" * 900)
    history = MemoryHistory(recorder([]), 5, 300.0, clock=clock, max_bytes=2_000)
    await history.publish("other", big)
    for _ in range(20):
        await history.publish("chat", big)
    assert list(history.channels()) == ["chat"]  # bounded by history_size instead
    assert history.channels()["chat"].messages == 5
    assert history.bytes == held(history) > 2_000


async def test_the_byte_count_follows_overflow_and_expiry(clock: Clock) -> None:
    delivered: Delivered = []
    history = MemoryHistory(recorder(delivered), 3, 60.0, clock=clock)
    for n in range(10):
        await history.publish("a", body(n))
        await history.publish("b", body(n))
    assert history.bytes == held(history)
    assert history.channels()["a"].messages == 3
    clock.now += 61
    await history.read("a", None)  # both unused for longer than ttl: both histories go
    assert history.bytes == held(history) == 0
    assert list(history.channels()) == ["a"]
