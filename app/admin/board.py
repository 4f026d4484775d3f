"""The state document `/admin/api/state` answers and `/admin/ws` pushes.

`{"generated_at", "instance", "instances": [...], "degraded": [...], "fleet": {...}}`:
this instance's snapshot first (fresh), then every other live instance's as
last reported through Redis. Each instance carries `series` — the whole 15
minutes when a page opens (`history=True`), the last few seconds in a live
push (the page appends them to what it has).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from app.admin.degraded import merge
from app.admin.fleet import DROP_AFTER, RECENT_POINTS, STALE_AFTER, Fleet
from app.admin.series import RouteSeries, columns
from app.admin.snapshot import InstanceReporter


class Board:
    def __init__(
        self,
        reporter: InstanceReporter,
        series: RouteSeries,
        fleet: Fleet,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.reporter = reporter
        self.series = series
        self.fleet = fleet
        self.clock = clock
        self._latest: dict[str, Any] | None = None
        self._latest_at = 0.0

    async def local(self, max_age: float = 0.0) -> dict[str, Any]:
        """This instance's snapshot, rebuilt unless one younger than `max_age` s exists."""
        now = self.clock()
        if self._latest is None or now - self._latest_at > max_age:
            self._latest = await self.reporter.snapshot()
            self._latest_at = now
        return self._latest

    async def state(self, *, history: bool, max_age: float = 0.0) -> dict[str, Any]:
        mine = dict(await self.local(max_age))
        points = list(self.series.points)
        mine["series"] = columns(points if history else points[-RECENT_POINTS:])
        mine["last_seen"] = mine["reported_at"]
        mine["stale"] = False
        instances = [mine, *await self.fleet.others(history=history)]
        return {
            "generated_at": self.clock(),
            "instance": mine["id"],
            "instances": instances,
            "degraded": merge(instances),
            "fleet": {
                "shared": self.fleet.shared,
                "error": self.fleet.error,
                "stale_after": STALE_AFTER,
                "drop_after": DROP_AFTER,
            },
        }
