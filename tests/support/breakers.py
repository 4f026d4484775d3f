"""A real breaker for tests that need one in front of a dependency."""

from __future__ import annotations

from app.breakers.breaker import Breaker
from app.breakers.machine import Machine, Policy
from tests.support.clock import Clock

# Opens on the first failure; one trial call once `open_seconds` have passed.
TOUCHY = Policy(
    failure_rate=50.0,
    minimum_calls=1,
    window=1,
    open_seconds=1.0,
    half_open_calls=1,
    slow_call_seconds=5.0,
    slow_call_rate=100.0,
)


def touchy_breaker(name: str, clock: Clock) -> Breaker:
    return Breaker(Machine(name, TOUCHY, clock), clock)
