"""GCRA arithmetic with an injected clock: bursts, refill, window edges, Retry-After."""

from __future__ import annotations

from app.ratelimit.algorithm import Decision, gcra
from app.ratelimit.limits import Limit
from app.ratelimit.memory_limiter import MemoryLimiter

SECOND = 1_000_000


class Clock:
    def __init__(self) -> None:
        self.now = 1_000 * SECOND

    def __call__(self) -> int:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += round(seconds * SECOND)


def spend(limiter: MemoryLimiter, limit: Limit, n: int, key: str = "k") -> list[Decision]:
    return [limiter.hit_now(key, limit) for _ in range(n)]


def test_a_full_quota_passes_at_once_and_no_more() -> None:
    clock = Clock()
    limiter = MemoryLimiter(clock)
    decisions = spend(limiter, Limit(5, 60), 8)
    assert [d.allowed for d in decisions] == [True] * 5 + [False] * 3
    assert [d.remaining for d in decisions] == [4, 3, 2, 1, 0, 0, 0, 0]


def test_retry_after_is_one_interval_after_a_burst() -> None:
    clock = Clock()
    limiter = MemoryLimiter(clock)
    *_, refused = spend(limiter, Limit(5, 60), 6)
    assert refused == Decision(False, 0, 12 * SECOND)  # 60 s / 5
    clock.advance(5)
    assert limiter.hit_now("k", Limit(5, 60)) == Decision(False, 0, 7 * SECOND)


def test_reset_is_the_time_until_the_whole_quota_is_back() -> None:
    clock = Clock()
    limiter = MemoryLimiter(clock)
    first, second = spend(limiter, Limit(5, 60), 2)
    assert first.reset_us == 12 * SECOND
    assert second.reset_us == 24 * SECOND


def test_the_budget_refills_one_interval_at_a_time() -> None:
    clock = Clock()
    limiter = MemoryLimiter(clock)
    limit = Limit(5, 60)
    spend(limiter, limit, 5)
    clock.advance(12 - 1e-6)
    assert not limiter.hit_now("k", limit).allowed  # one microsecond early
    clock.advance(1e-6)
    assert limiter.hit_now("k", limit) == Decision(True, 0, 60 * SECOND)
    assert not limiter.hit_now("k", limit).allowed


def test_no_window_edge_lets_a_double_burst_through() -> None:
    # A fixed window lets N pass at the end of one window and N more at the
    # start of the next; GCRA allows only the refill in between.
    clock = Clock()
    limiter = MemoryLimiter(clock)
    limit = Limit(10, 1)
    clock.advance(0.999)
    assert sum(d.allowed for d in spend(limiter, limit, 20)) == 10
    clock.advance(0.002)
    assert sum(d.allowed for d in spend(limiter, limit, 20)) == 0
    clock.advance(0.1)
    assert sum(d.allowed for d in spend(limiter, limit, 20)) == 1


def test_after_a_quiet_window_the_whole_burst_is_back() -> None:
    clock = Clock()
    limiter = MemoryLimiter(clock)
    limit = Limit(3, 1)
    spend(limiter, limit, 3)
    clock.advance(1.000002)  # the interval is rounded up: 333,334 us
    assert [d.allowed for d in spend(limiter, limit, 4)] == [True, True, True, False]


def test_a_steady_rate_at_the_limit_always_passes() -> None:
    clock = Clock()
    limiter = MemoryLimiter(clock)
    limit = Limit(4, 1)
    for _ in range(100):
        assert limiter.hit_now("k", limit).allowed
        clock.advance(0.25)


def test_refused_requests_do_not_spend_budget() -> None:
    clock = Clock()
    limiter = MemoryLimiter(clock)
    limit = Limit(2, 10)
    spend(limiter, limit, 2)
    spend(limiter, limit, 50)  # hammering while refused
    clock.advance(5)
    assert limiter.hit_now("k", limit).allowed


def test_keys_have_their_own_budgets() -> None:
    limiter = MemoryLimiter(Clock())
    limit = Limit(1, 60)
    assert limiter.hit_now("a", limit).allowed
    assert limiter.hit_now("b", limit).allowed
    assert not limiter.hit_now("a", limit).allowed


def test_expired_entries_are_swept_as_the_table_grows() -> None:
    clock = Clock()
    limiter = MemoryLimiter(clock, sweep_at=10)
    limit = Limit(1, 1)
    for i in range(9):
        limiter.hit_now(f"old{i}", limit)
    clock.advance(2)
    limiter.hit_now("new", limit)
    assert len(limiter) == 1


def test_gcra_is_pure() -> None:
    decision, booked = gcra(None, 100, 10, 50)
    assert decision == Decision(True, 4, 10)
    assert booked == 110
    decision, booked = gcra(150, 100, 10, 50)
    assert decision == Decision(False, 0, 10)
    assert booked is None
