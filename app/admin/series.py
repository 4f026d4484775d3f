"""Per-route request rate, error rate and latency, second by second, for 15 minutes.

`RouteSeries.observe` is a request observer (app/request_context.py): it runs
once per request on the request path, so it does the least it can — a dict
lookup keyed by the matched route object, two increments and one `bisect`
into fixed latency buckets. Once a second `roll()` turns the second's counts
into a point per route (requests, 5xx responses, p50 and p99 in ms) and
starts the next second. Points are kept for `KEEP_SECONDS`, so the charts are
full the moment a page opens.

A point is `(t, {route: (requests, errors, p50_ms, p99_ms)})`, where `t` is the
epoch second it covers and `route` is "METHOD /template". `columns()` turns
points into the arrays the page draws.
"""

from __future__ import annotations

import bisect
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from aiohttp import web

KEEP_SECONDS = 900
UNMATCHED = "unmatched"

# Latency buckets: upper bounds in seconds, x1.25 apart from 50 us to ~2 min,
# so a quantile read from them is within 25% of the true value.
BOUNDS: tuple[float, ...] = (*(5e-5 * 1.25**i for i in range(67)), float("inf"))
QUANTILES = (0.5, 0.99)

RouteStats = tuple[int, int, float | None, float | None]
Point = tuple[int, dict[str, RouteStats]]


class _Second:
    """One route's counts in the current second."""

    __slots__ = ("buckets", "count", "errors", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self.count = 0
        self.errors = 0
        self.buckets = [0] * len(BOUNDS)

    def take(self) -> RouteStats:
        """The second's stats; the counts start again from zero."""
        p50, p99 = (quantile(self.buckets, self.count, q) for q in QUANTILES)
        stats = (self.count, self.errors, p50, p99)
        self.count = 0
        self.errors = 0
        self.buckets = [0] * len(BOUNDS)
        return stats


def quantile(buckets: list[int], count: int, q: float) -> float | None:
    """The q-quantile in ms from bucket counts, interpolated inside its bucket."""
    if count == 0:
        return None
    rank = q * count
    seen = 0
    for index, n in enumerate(buckets):
        if n and seen + n >= rank:
            lower = BOUNDS[index - 1] if index else 0.0
            upper = BOUNDS[index] if index < len(BOUNDS) - 1 else lower * 1.25
            seconds = lower + (upper - lower) * (rank - seen) / n
            return float(f"{seconds * 1000:.3g}")
        seen += n
    return None  # unreachable while count == sum(buckets)


def route_name(route: web.AbstractRoute) -> str:
    resource = route.resource
    if resource is None:
        return UNMATCHED
    return f"{route.method} {resource.canonical}"


class RouteSeries:
    """This instance's per-route series."""

    def __init__(self, keep: int = KEEP_SECONDS, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.points: deque[Point] = deque(maxlen=keep)
        # Keyed by the route object the router matched: no string is built per request.
        self._seconds: dict[object, _Second] = {}
        self._by_name: dict[str, _Second] = {}

    def observe(self, request: web.Request, status: int, seconds: float) -> None:
        """A request is over (called by the groundwork middleware)."""
        route = request.match_info.route
        second = self._seconds.get(route)
        if second is None:
            second = self._second_for(route)
        second.count += 1
        if status >= 500:
            second.errors += 1
        second.buckets[bisect.bisect_left(BOUNDS, seconds)] += 1

    def _second_for(self, route: web.AbstractRoute) -> _Second:
        name = route_name(route)
        second = self._by_name.get(name)
        if second is None:
            second = self._by_name[name] = _Second(name)
        if route.resource is not None:
            # Unmatched requests get a new route object each: never keep those.
            self._seconds[route] = second
        return second

    def roll(self, t: int | None = None) -> Point:
        """Close the second `t` (default: the one that just ended) and keep its point."""
        if t is None:
            t = int(self.clock()) - 1
        routes = {s.name: s.take() for s in self._by_name.values() if s.count}
        point = (t, routes)
        self.points.append(point)
        return point

    def since(self, t: int) -> list[Point]:
        """The points after second `t`, oldest first."""
        return [p for p in self.points if p[0] > t]


def encode_point(point: Point) -> dict[str, Any]:
    t, routes = point
    return {"t": t, "r": {name: list(stats) for name, stats in routes.items()}}


def decode_point(data: Any) -> Point | None:
    """A point as stored in Redis, or None if it is not one."""
    if not isinstance(data, dict) or not isinstance(data.get("t"), int):
        return None
    routes = data.get("r")
    if not isinstance(routes, dict):
        return None
    out: dict[str, RouteStats] = {}
    for name, stats in routes.items():
        if isinstance(stats, list) and len(stats) == 4:
            out[str(name)] = (int(stats[0]), int(stats[1]), stats[2], stats[3])
    return data["t"], out


def columns(points: Iterable[Point]) -> dict[str, Any]:
    """Points as the page draws them: one time axis, four arrays per route.

    `rate` is requests in that second (so requests/s), `errors` its 5xx
    responses, `p50`/`p99` latency in ms (null in a second with no request).
    """
    ordered = sorted(points, key=lambda p: p[0])
    times = [t for t, _ in ordered]
    names = sorted({name for _, routes in ordered for name in routes})
    out: dict[str, Any] = {"step": 1, "t": times, "routes": {}}
    for name in names:
        rate: list[int] = []
        errors: list[int] = []
        p50: list[float | None] = []
        p99: list[float | None] = []
        for _, routes in ordered:
            stats = routes.get(name)
            if stats is None:
                rate.append(0)
                errors.append(0)
                p50.append(None)
                p99.append(None)
            else:
                rate.append(stats[0])
                errors.append(stats[1])
                p50.append(stats[2])
                p99.append(stats[3])
        out["routes"][name] = {"rate": rate, "errors": errors, "p50": p50, "p99": p99}
    return out
