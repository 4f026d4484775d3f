"""The pure state machine, every transition and the window arithmetic, on a fake clock."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from app.breakers.machine import HALF_OPEN_RETRY_AFTER, Machine, Policy, Transition
from tests.support.clock import Clock

POLICY = Policy(
    failure_rate=50.0,
    minimum_calls=4,
    window=6,
    open_seconds=10.0,
    half_open_calls=2,
    slow_call_seconds=1.0,
    slow_call_rate=75.0,
)


@pytest.fixture
def seen() -> list[Transition]:
    return []


def machine(clock: Clock, seen: list[Transition], **policy: Any) -> Machine:
    return Machine("test", dataclasses.replace(POLICY, **policy), clock, seen.append)


@pytest.fixture
def m(clock: Clock, seen: list[Transition]) -> Machine:
    return machine(clock, seen)


def calls(m: Machine, *outcomes: bool, seconds: float = 0.0) -> None:
    for ok in outcomes:
        assert m.allow()
        m.record(ok, seconds)


def opened(m: Machine, clock: Clock) -> None:
    calls(m, False, False, False, False)
    assert m.state == "open"


def half_open(m: Machine, clock: Clock) -> None:
    opened(m, clock)
    clock.now += POLICY.open_seconds
    assert m.state == "half_open"


# --- closed: the window ---------------------------------------------------------------


def test_starts_closed_and_lets_calls_through(m: Machine) -> None:
    assert m.state == "closed"
    assert m.allow()
    assert m.retry_after() == 0.0


def test_no_judgement_before_minimum_calls(m: Machine) -> None:
    calls(m, False, False, False)  # 100% failures, but only 3 of the 4 needed
    assert m.state == "closed"
    calls(m, False)
    assert m.state == "open"


def test_opens_when_the_failure_rate_reaches_the_threshold_exactly(m: Machine) -> None:
    calls(m, True, True, True, False, False)  # 2/5 = 40%
    assert m.state == "closed"
    calls(m, False)  # 3/6 = 50% >= 50%
    assert m.state == "open"


def test_stays_closed_below_the_failure_rate(m: Machine) -> None:
    calls(m, True, False, True, True)  # 25%
    assert m.state == "closed"
    assert m.stats().calls == 4
    assert m.stats().failures == 1
    assert m.stats().failure_rate == 25.0


def test_the_window_keeps_only_the_last_calls(m: Machine) -> None:
    calls(m, True, True, True, True, False, True)  # 1/6
    assert m.state == "closed"
    calls(m, True, True, True, True, True)  # the failure slides out
    stats = m.stats()
    assert (stats.calls, stats.failures) == (6, 0)
    calls(m, False, False)  # 2/6
    assert m.state == "closed"
    calls(m, False)  # 3/6 = 50%
    assert m.state == "open"


def test_minimum_calls_above_the_window_means_a_full_window(
    clock: Clock, seen: list[Transition]
) -> None:
    m = machine(clock, seen, minimum_calls=100, window=3)
    calls(m, False, False)
    assert m.state == "closed"
    calls(m, False)
    assert m.state == "open"


def test_slow_calls_open_by_their_own_rate(m: Machine) -> None:
    calls(m, True, True, True, seconds=1.5)
    calls(m, True, seconds=0.5)  # 3/4 = 75% slow
    assert m.state == "open"


def test_slow_means_strictly_slower_than_the_threshold(m: Machine) -> None:
    calls(m, True, True, True, True, seconds=1.0)
    assert m.state == "closed"
    assert m.stats().slow_calls == 0


def test_slow_failures_count_for_both_rates(m: Machine) -> None:
    calls(m, True, True, seconds=0.1)
    calls(m, False, seconds=2.0)
    calls(m, True, seconds=0.1)
    stats = m.stats()
    assert (stats.failures, stats.slow_calls) == (1, 1)
    assert (stats.failure_rate, stats.slow_call_rate) == (25.0, 25.0)


def test_transitions_say_why(m: Machine, seen: list[Transition], clock: Clock) -> None:
    calls(m, True, True, True, seconds=1.5)
    calls(m, True)
    assert [(t.source, t.to) for t in seen] == [("closed", "open")]
    assert "slow call rate 75% >= 75%" in seen[0].reason
    assert seen[0].at == clock.now
    assert seen[0].breaker == "test"


# --- open -------------------------------------------------------------------------------


def test_open_refuses_and_counts_down(m: Machine, clock: Clock) -> None:
    opened(m, clock)
    assert not m.allow()
    assert m.retry_after() == 10.0
    clock.now += 4
    assert not m.allow()
    assert m.retry_after() == 6.0


def test_outcomes_of_calls_allowed_before_opening_are_ignored(m: Machine, clock: Clock) -> None:
    calls(m, False, False, False)
    assert m.allow()  # a call in flight when the breaker opens
    calls(m, False)
    m.record(True)  # ... reports afterwards
    assert m.state == "open"
    assert m.stats().calls == 0


def test_after_open_seconds_it_is_half_open(
    m: Machine, clock: Clock, seen: list[Transition]
) -> None:
    opened(m, clock)
    clock.now += 9.999
    assert m.state == "open"
    assert m.peek() == "open"
    clock.now += 0.001
    assert m.peek() == "half_open"  # peeking moves nothing
    assert [t.to for t in seen] == ["open"]
    assert m.state == "half_open"
    assert [t.to for t in seen] == ["open", "half_open"]
    assert m.retry_after() == 0.0


def test_a_probe_that_answers_half_opens_an_open_breaker_at_once(
    m: Machine, clock: Clock, seen: list[Transition]
) -> None:
    """Open for 10 s, but the dependency's own probe answered after 1 s: trials now."""
    opened(m, clock)
    clock.now += 1
    m.probe_succeeded()
    assert m.state == "half_open"
    assert seen[-1].reason == "its probe answered"
    calls(m, True, True)
    assert m.state == "closed"


def test_a_probe_does_not_close_a_breaker_its_trials_would_reopen(m: Machine, clock: Clock) -> None:
    opened(m, clock)
    m.probe_succeeded()
    calls(m, False, False)  # the probe answered, the calls still fail
    assert m.state == "open"
    assert m.retry_after() == 10.0


def test_a_probe_changes_nothing_unless_open(m: Machine, clock: Clock) -> None:
    m.probe_succeeded()
    assert m.state == "closed"
    m.force_open()
    m.probe_succeeded()
    assert m.state == "forced_open"  # an operator's state, left only by reset()
    m.reset()
    half_open(m, clock)
    assert m.allow()
    m.probe_succeeded()
    assert (m.state, m.trials_in_flight) == ("half_open", 1)  # the trials go on


# --- half-open --------------------------------------------------------------------------


def test_half_open_admits_at_most_half_open_calls_concurrently(m: Machine, clock: Clock) -> None:
    half_open(m, clock)
    assert m.allow()
    assert m.allow()
    assert not m.allow()  # refused as if open
    assert m.trials_in_flight == 2
    assert m.retry_after() == HALF_OPEN_RETRY_AFTER


def test_half_open_trials_do_not_restart_once_reported(m: Machine, clock: Clock) -> None:
    half_open(m, clock)
    assert m.allow()
    m.record(True)
    assert m.state == "half_open"
    assert m.allow()  # the second trial
    assert not m.allow()  # one reported + one in flight = every trial taken


def test_half_open_closes_when_the_trials_pass(
    m: Machine, clock: Clock, seen: list[Transition]
) -> None:
    half_open(m, clock)
    calls(m, True, True)
    assert m.state == "closed"
    assert m.stats().calls == 0  # a fresh window
    assert [t.to for t in seen] == ["open", "half_open", "closed"]


def test_half_open_reopens_when_the_trials_fail(
    m: Machine, clock: Clock, seen: list[Transition]
) -> None:
    half_open(m, clock)
    calls(m, True, False)  # 50% of the trials
    assert m.state == "open"
    assert m.retry_after() == 10.0
    assert [t.to for t in seen] == ["open", "half_open", "open"]
    assert seen[-1].reason.startswith("half-open trials")


def test_half_open_reopens_when_the_trials_are_slow(m: Machine, clock: Clock) -> None:
    half_open(m, clock)
    calls(m, True, True, seconds=5.0)
    assert m.state == "open"


def test_half_open_judges_only_when_every_trial_reported(m: Machine, clock: Clock) -> None:
    half_open(m, clock)
    assert m.allow()
    assert m.allow()
    m.record(False)
    assert m.state == "half_open"  # one of two: no judgement yet
    assert m.stats().calls == 1
    m.record(True)
    assert m.state == "open"


def test_a_released_trial_frees_its_slot(m: Machine, clock: Clock) -> None:
    half_open(m, clock)
    assert m.allow()
    assert m.allow()
    m.release()
    assert m.trials_in_flight == 1
    assert m.allow()


def test_release_outside_half_open_changes_nothing(m: Machine) -> None:
    calls(m, False, False)
    assert m.allow()
    m.release()
    assert m.stats().calls == 2
    assert m.state == "closed"


def test_reopened_breaker_waits_open_seconds_again(m: Machine, clock: Clock) -> None:
    half_open(m, clock)
    calls(m, False, False)
    clock.now += 9
    assert not m.allow()
    clock.now += 1
    assert m.allow()
    assert m.state == "half_open"


# --- operator states --------------------------------------------------------------------


def test_forced_open_refuses_until_reset(m: Machine, clock: Clock, seen: list[Transition]) -> None:
    m.force_open()
    assert m.state == "forced_open"
    assert not m.allow()
    assert m.retry_after() == POLICY.open_seconds
    clock.now += 1_000_000  # never becomes half-open by itself
    assert m.state == "forced_open"
    m.record(False)  # a late outcome is ignored
    m.reset()
    assert m.state == "closed"
    assert m.allow()
    assert [t.to for t in seen] == ["forced_open", "closed"]
    assert seen[0].reason == "forced open by an operator"


def test_disabled_lets_everything_through_and_judges_nothing(m: Machine, clock: Clock) -> None:
    m.disable()
    for _ in range(50):
        assert m.allow()
        m.record(False, 100.0)
    assert m.state == "disabled"
    assert m.stats().calls == 0
    assert m.retry_after() == 0.0
    m.reset()
    assert m.state == "closed"


def test_reset_closes_an_open_breaker_with_an_empty_window(m: Machine, clock: Clock) -> None:
    opened(m, clock)
    m.reset()
    assert m.state == "closed"
    assert m.stats().calls == 0
    calls(m, False, False, False)
    assert m.state == "closed"  # minimum_calls counts afresh


def test_reset_of_a_closed_breaker_clears_its_window_without_a_transition(
    m: Machine, seen: list[Transition]
) -> None:
    calls(m, False, False, False)
    m.reset()
    assert m.stats().calls == 0
    assert seen == []


def test_operator_states_can_replace_each_other(m: Machine, clock: Clock) -> None:
    m.force_open()
    m.disable()
    assert m.allow()
    m.force_open()
    assert not m.allow()
    half = machine(clock, [])
    half_open(half, clock)
    assert half.allow()
    half.force_open()
    assert half.trials_in_flight == 0
    assert not half.allow()


def test_a_single_trial_decides_alone(clock: Clock, seen: list[Transition]) -> None:
    m = machine(clock, seen, half_open_calls=1)
    half_open(m, clock)
    assert m.allow()
    assert not m.allow()
    m.record(True)
    assert m.state == "closed"


def test_the_running_window_counts_match_the_outcomes_in_the_window(
    clock: Clock, seen: list[Transition]
) -> None:
    """Counts are kept as calls enter and leave the window; check them against a recount."""
    import random

    rng = random.Random(7)
    m = machine(clock, seen, failure_rate=100.0, slow_call_rate=100.0, window=10)
    recent: list[tuple[bool, bool]] = []
    for _ in range(500):
        failed = rng.random() < 0.3
        slow = rng.random() < 0.3
        m.record(not failed, 2.0 if slow else 0.1)
        recent = [*recent, (failed, slow)][-10:]
        if m.state != "closed":  # a full window of failures: fresh counts from here
            m.reset()
            recent = []
            continue
        stats = m.stats()
        assert stats.calls == len(recent)
        assert stats.failures == sum(f for f, _ in recent)
        assert stats.slow_calls == sum(s for _, s in recent)
