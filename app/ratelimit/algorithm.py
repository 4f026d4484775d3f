"""GCRA, the generic cell rate algorithm: the limiter's arithmetic, IO-free.

One number per client is stored: the theoretical arrival time (TAT), the
instant at which the client's budget would be fully restored. A request at
`now` books one emission interval after `max(TAT, now)`; it is allowed when
that booking stays within the horizon (the whole quota) from now. So a quota
of N can be spent at once as a burst of exactly N, and then refills smoothly
at one request per `window / N` — no fixed-window edge where 2N pass.

`redis_limiter.SCRIPT` is the same function in Lua; tests hold both to it.
"""

from __future__ import annotations

from typing import NamedTuple


class Decision(NamedTuple):
    """One request's verdict.

    `reset_us` is, when allowed, the time until the whole quota is back; when
    refused, the time until one request will be allowed (the Retry-After).
    """

    allowed: bool
    remaining: int
    reset_us: int


def gcra(tat: int | None, now: int, interval: int, horizon: int) -> tuple[Decision, int | None]:
    """The decision for a request at `now`, and the TAT to store (None: leave it unchanged)."""
    base = now if tat is None or tat < now else tat
    booked = base + interval
    allow_at = booked - horizon
    if now < allow_at:
        return Decision(False, 0, allow_at - now), None
    return Decision(True, (horizon - (booked - now)) // interval, booked - now), booked
