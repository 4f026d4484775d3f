"""The minimal open/closed guard Redis users share until the breakers plugin replaces it."""

from __future__ import annotations

import asyncio

import pytest

from app.core.guard import MinimalGuard, Refused, call_guarded
from tests.support.breakers import touchy_breaker
from tests.support.clock import Clock


def test_closed_until_a_failure_then_refuses_for_open_seconds() -> None:
    clock = Clock()
    guard = MinimalGuard("redis", open_seconds=2.0, clock=clock)
    assert guard.state == "closed"
    assert guard.allow()
    guard.record(False)
    assert guard.state == "open"
    assert not guard.allow()
    assert guard.retry_after() == 2.0
    clock.now += 1.5
    assert not guard.allow()
    assert guard.retry_after() == 0.5


def test_after_open_seconds_a_trial_is_allowed_and_a_success_closes() -> None:
    clock = Clock()
    guard = MinimalGuard("redis", open_seconds=1.0, clock=clock)
    guard.record(False)
    clock.now += 1.0
    assert guard.state == "half_open"
    assert guard.allow()
    assert guard.retry_after() == 0.0
    guard.record(True)
    assert guard.state == "closed"


def test_a_failed_trial_reopens() -> None:
    clock = Clock()
    guard = MinimalGuard("redis", open_seconds=1.0, clock=clock)
    guard.record(False)
    clock.now += 1.0
    assert guard.allow()
    guard.record(False)
    assert guard.state == "open"
    assert guard.retry_after() == 1.0


def test_a_probe_that_answers_ends_the_open_time() -> None:
    clock = Clock()
    guard = MinimalGuard("redis", open_seconds=10.0, clock=clock)
    guard.record(False)
    clock.now += 1
    guard.probe_succeeded()
    assert guard.allow()
    assert guard.retry_after() == 0.0
    guard.record(False)  # a failed call opens it for its full time again
    assert guard.retry_after() == 10.0
    guard.probe_succeeded()
    guard.record(True)
    assert guard.state == "closed"


def test_opens_only_after_the_configured_consecutive_failures() -> None:
    clock = Clock()
    guard = MinimalGuard("redis", failures_to_open=3, clock=clock)
    guard.record(False)
    guard.record(False)
    guard.record(True)
    guard.record(False)
    guard.record(False)
    assert guard.state == "closed"
    guard.record(False)
    assert guard.state == "open"


# -- call_guarded: how every Redis user calls through a guard --------------------


async def test_call_guarded_refuses_without_calling() -> None:
    clock = Clock()
    guard = MinimalGuard("redis", clock=clock)
    guard.record(False)
    called = False

    async def call() -> int:
        nonlocal called
        called = True
        return 1

    with pytest.raises(Refused):
        await call_guarded(guard, call, (OSError,))
    assert not called


async def test_call_guarded_records_failures_and_successes() -> None:
    guard = MinimalGuard("redis", clock=Clock())

    async def fails() -> int:
        raise OSError("refused")

    async def works() -> int:
        return 7

    with pytest.raises(OSError, match="refused"):
        await call_guarded(guard, fails, (OSError,))
    assert guard.state == "open"
    guard._open_until = 0.0  # time is up
    assert await call_guarded(guard, works, (OSError,)) == 7
    assert guard.state == "closed"


async def test_a_cancelled_call_frees_its_half_open_trial_slot() -> None:
    clock = Clock()
    breaker = touchy_breaker("redis", clock)
    breaker.record(False)  # opens
    clock.now += 1.0
    started = asyncio.Event()

    async def hangs() -> None:
        started.set()
        await asyncio.sleep(3600)

    task = asyncio.create_task(call_guarded(breaker, hangs, (OSError,)))
    await started.wait()
    assert not breaker.allow()  # the only trial slot is taken
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert breaker.allow()  # released, not leaked
