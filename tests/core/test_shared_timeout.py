import asyncio
import time

import pytest

from app.core.shared_timeout import SharedTimeout

SECONDS = 0.05


async def test_an_await_that_finishes_in_time_gives_its_result() -> None:
    timeout = SharedTimeout(SECONDS)

    async def answer() -> int:
        await asyncio.sleep(0)
        return 42

    assert await timeout.run(answer()) == 42
    assert timeout._entries == {}


async def test_an_await_past_its_deadline_raises_timeout_error_no_sooner() -> None:
    timeout = SharedTimeout(SECONDS)
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await timeout.run(asyncio.sleep(10))
    assert time.monotonic() - started >= SECONDS * 0.99
    assert timeout._entries == {}


async def test_each_await_keeps_its_own_deadline_on_the_shared_timer() -> None:
    timeout = SharedTimeout(SECONDS)

    async def slow(started_after: float) -> float:
        await asyncio.sleep(started_after)
        began = time.monotonic()
        try:
            await timeout.run(asyncio.sleep(10))
        except TimeoutError:
            return time.monotonic() - began
        raise AssertionError("not timed out")

    async def fast(n: int) -> int:
        return await timeout.run(asyncio.sleep(SECONDS / 5, result=n))

    # The first slow call arms the timer; the later ones must not be cut short by
    # it, and the fast ones in between must all come back with their own result.
    results = await asyncio.gather(
        slow(0), slow(SECONDS / 2), slow(SECONDS * 1.5), *(fast(n) for n in range(20))
    )
    for waited in results[:3]:
        assert SECONDS * 0.99 <= waited < SECONDS * 10
    assert results[3:] == list(range(20))
    assert timeout._entries == {}


async def test_a_cancellation_from_elsewhere_stays_a_cancellation() -> None:
    timeout = SharedTimeout(10)
    task = asyncio.create_task(timeout.run(asyncio.sleep(10)))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert timeout._entries == {}


async def test_a_cancellation_from_elsewhere_wins_over_an_expiry_in_the_same_turn() -> None:
    timeout = SharedTimeout(SECONDS)
    waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(timeout.run(waiter))
    await asyncio.sleep(0)
    # Expire it and cancel it before it resumes: asyncio.timeout's rule, the caller's
    # cancellation is not swallowed into a TimeoutError.
    timeout._entries[next(iter(timeout._entries))].deadline = 0.0
    timeout._expire()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_an_outer_asyncio_timeout_still_raises_as_its_own() -> None:
    inner = SharedTimeout(10)
    outer = asyncio.timeout(SECONDS)
    with pytest.raises(TimeoutError):
        async with outer:
            await inner.run(asyncio.sleep(10))
    assert outer.expired()
    assert inner._entries == {}


async def test_an_expired_await_leaves_its_task_usable() -> None:
    """The task is uncancelled: a later await in it is not cancelled again."""
    timeout = SharedTimeout(SECONDS)
    with pytest.raises(TimeoutError):
        await timeout.run(asyncio.sleep(10))
    current = asyncio.current_task()
    assert current is not None
    assert current.cancelling() == 0
    assert await timeout.run(asyncio.sleep(0, result="after")) == "after"


def test_one_instance_serves_one_loop_after_another() -> None:
    """A loop that is gone is not mistaken for the running one."""
    timeout = SharedTimeout(SECONDS)

    async def expire() -> None:
        with pytest.raises(TimeoutError):
            await timeout.run(asyncio.sleep(10))

    async def cancel_early() -> None:  # leaves the first loop's timer armed
        task = asyncio.create_task(timeout.run(asyncio.sleep(10)))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(cancel_early())
    asyncio.run(expire())
    asyncio.run(expire())
