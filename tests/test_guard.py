"""The minimal open/closed guard Redis users share until the breakers plugin replaces it."""

from __future__ import annotations

from app.guard import MinimalGuard


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


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
