"""A limit as users write it ("100/second") and as the arithmetic uses it.

Times inside the limiter are integer microseconds: Redis's `TIME` gives them
exactly, and integers keep the Lua script and the Python arithmetic identical
(no float rounding that could let one extra request through).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

UNITS: dict[str, int] = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
_LIMIT = re.compile(r"\s*(\d+)\s*/\s*(second|minute|hour|day)\s*")
EXPECTED = '"N/second|minute|hour|day"'

MICROSECONDS = 1_000_000


@dataclass(frozen=True, slots=True)
class Limit:
    """`quota` requests per `window` seconds, allowed as a burst, then evenly spaced."""

    quota: int
    window: int
    unit: str = "second"
    # The emission interval (one request's share of the window, rounded up so
    # the rate is never exceeded) and the horizon (how far ahead of now the
    # budget may be booked: the whole quota). Computed once, read per request.
    interval_us: int = field(init=False, repr=False, compare=False)
    horizon_us: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        interval = -(-self.window * MICROSECONDS // self.quota)
        object.__setattr__(self, "interval_us", interval)
        object.__setattr__(self, "horizon_us", interval * self.quota)

    def divided(self, parts: int) -> Limit:
        """This limit shared among `parts` instances (at least one request each)."""
        return Limit(max(1, self.quota // max(1, parts)), self.window, self.unit)

    def __str__(self) -> str:
        return f"{self.quota}/{self.unit}"


def parse_limit(text: str) -> Limit:
    """ "100/second" -> Limit(100, 1); ValueError naming the expected form otherwise."""
    match = _LIMIT.fullmatch(text)
    if match is None or int(match[1]) < 1:
        raise ValueError(f'expected {EXPECTED}, got "{text}"')
    return Limit(int(match[1]), UNITS[match[2]], match[2])


def check_limit(text: str) -> str | None:
    """Config validator for a limit string."""
    try:
        parse_limit(text)
    except ValueError as exc:
        return str(exc)
    return None
