"""`Breaker` as a context manager and decorator, and the registry's metrics and events."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import CollectorRegistry

from app.breakers import BreakerRegistry, BreakersSettings, Transition
from app.breakers.settings import BreakerOverride
from app.errors import CircuitOpen
from tests.support.clock import Clock


class Boom(Exception):
    pass


class NotOurs(Exception):
    pass


SETTINGS = BreakersSettings(minimum_calls=2, window=2, open_seconds=5.0, half_open_calls=1)


@pytest.fixture
def clock() -> Clock:
    return Clock(0.0)


@pytest.fixture
def metrics() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def breakers(clock: Clock, metrics: CollectorRegistry) -> BreakerRegistry:
    return BreakerRegistry(SETTINGS, metrics, clock=clock)


async def test_declared_exceptions_are_failures_and_open_the_breaker(
    breakers: BreakerRegistry,
) -> None:
    breaker = breakers.get("dep")
    for _ in range(2):
        with pytest.raises(Boom):
            async with breaker.guarding(Boom):
                raise Boom
    assert breaker.state == "open"
    with pytest.raises(CircuitOpen) as refused:
        async with breaker.guarding(Boom):
            pytest.fail("an open breaker must not run the call")
    assert refused.value.retry_after == 5
    assert refused.value.details == {"breaker": "dep"}


async def test_undeclared_exceptions_are_neither_success_nor_failure(
    breakers: BreakerRegistry,
) -> None:
    breaker = breakers.get("dep")
    for _ in range(5):
        with pytest.raises(NotOurs):
            async with breaker.guarding(Boom):
                raise NotOurs
    assert breaker.state == "closed"
    assert breaker.stats().calls == 0


async def test_plain_async_with_counts_every_exception(breakers: BreakerRegistry) -> None:
    breaker = breakers.get("dep")
    for _ in range(2):
        with pytest.raises(NotOurs):
            async with breaker:
                raise NotOurs
    assert breaker.state == "open"


async def test_decorator_guards_each_call(breakers: BreakerRegistry, clock: Clock) -> None:
    breaker = breakers.get("dep")
    answers = iter([Boom(), Boom(), "ok"])

    @breaker.guarding(Boom)
    async def call(x: int) -> str:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return f"{answer}{x}"

    for _ in range(2):
        with pytest.raises(Boom):
            await call(1)
    with pytest.raises(CircuitOpen):
        await call(1)
    clock.now += 5
    assert await call(7) == "ok7"  # the half-open trial passes
    assert breaker.state == "closed"


async def test_durations_feed_the_slow_call_rate(clock: Clock) -> None:
    settings = BreakersSettings(minimum_calls=1, window=1, slow_call_seconds=1, slow_call_rate=100)
    breaker = BreakerRegistry(settings, CollectorRegistry(), clock=clock).get("dep")
    async with breaker:
        clock.now += 2
    assert breaker.state == "open"


async def test_one_guard_shared_by_concurrent_calls(breakers: BreakerRegistry) -> None:
    breaker = breakers.get("dep")
    guard = breaker.guarding(Boom)
    gate = asyncio.Event()

    async def call() -> None:
        async with guard:
            await gate.wait()

    tasks = [asyncio.create_task(call()) for _ in range(3)]
    await asyncio.sleep(0)
    gate.set()
    await asyncio.gather(*tasks)
    assert breaker.stats().calls == 2  # the window holds 2
    assert breaker.stats().failures == 0


async def test_a_cancelled_trial_gives_its_slot_back(
    breakers: BreakerRegistry, clock: Clock
) -> None:
    breaker = breakers.get("dep")
    for _ in range(2):
        breaker.allow()
        breaker.record(False)
    clock.now += 5
    started = asyncio.Event()

    async def trial() -> None:
        async with breaker:
            started.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(trial())
    await started.wait()
    assert not breaker.allow()  # the one trial slot is taken
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert breaker.allow()


def test_overrides_replace_only_their_keys() -> None:
    settings = BreakersSettings(
        failure_rate=50, overrides={"redis": BreakerOverride(open_seconds=1.5)}
    )
    assert settings.policy("redis").open_seconds == 1.5
    assert settings.policy("redis").failure_rate == 50
    assert settings.policy("other").open_seconds == 10.0


def sample(metrics: CollectorRegistry, name: str, **labels: str) -> float | None:
    return metrics.get_sample_value(name, labels)


async def test_transitions_are_counted_gauged_and_published(
    breakers: BreakerRegistry, clock: Clock, metrics: CollectorRegistry
) -> None:
    seen: list[Transition] = []

    async def listen(transition: Transition) -> None:
        seen.append(transition)

    breakers.transitions.subscribe(listen)
    dispatching = asyncio.create_task(breakers.dispatch())
    breaker = breakers.get("dep")
    assert sample(metrics, "keel_breaker_state", breaker="dep") == 0
    for _ in range(2):
        breaker.allow()
        breaker.record(False)
    assert sample(metrics, "keel_breaker_state", breaker="dep") == 2
    clock.now += 5
    assert sample(metrics, "keel_breaker_state", breaker="dep") == 1  # read at scrape time
    assert breaker.allow()
    breaker.record(True)
    await breakers.force_open("dep")
    assert sample(metrics, "keel_breaker_state", breaker="dep") == 2
    await breakers.disable("dep")
    assert sample(metrics, "keel_breaker_state", breaker="dep") == 0
    for _ in range(20):
        await asyncio.sleep(0)
    dispatching.cancel()
    assert [t.to for t in seen] == ["open", "half_open", "closed", "forced_open", "disabled"]
    for to in ("open", "half_open", "closed", "forced_open", "disabled"):
        assert sample(metrics, "keel_breaker_transitions_total", breaker="dep", to=to) == 1


async def test_local_operator_actions_report_this_instance(breakers: BreakerRegistry) -> None:
    breakers.get("dep")
    result = await breakers.force_open("dep")
    assert result.applied == ["local"]
    assert breakers.get("dep").state == "forced_open"
    unknown = await breakers.reset("nope")
    assert unknown.applied == []
    assert unknown.unknown == ["local"]
    assert "nope" not in breakers
