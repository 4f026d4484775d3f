"""The once-a-second beat: close the second's per-route point, report to the fleet.

Aligned to wall-clock seconds, so every instance's points cover the same
seconds and the page can add them up. Without Redis only the point is made
(a snapshot is built when a page asks); with Redis a snapshot is built and
published every second whether or not anyone watches, so that a page on any
other instance can show this one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from app.admin.board import Board
from app.admin.fleet import Fleet
from app.admin.series import RouteSeries

log = logging.getLogger("keel.admin")

# Just past the second boundary, so the second being closed is really over.
OFFSET = 0.02


class Reporting:
    def __init__(
        self,
        board: Board,
        series: RouteSeries,
        fleet: Fleet,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.board = board
        self.series = series
        self.fleet = fleet
        self.clock = clock

    async def tick(self) -> None:
        self.series.roll(int(self.clock()) - 1)
        if self.fleet.shared:
            snapshot = await self.board.local()
            await self.fleet.publish(snapshot, self.series.since(self.fleet.published_through))

    async def run(self) -> None:
        """Tick just after every second, forever (a background task of the plugin)."""
        while True:
            now = self.clock()
            await asyncio.sleep(1.0 - (now % 1.0) + OFFSET)
            try:
                await self.tick()
            except Exception:
                log.exception("admin reporting failed")  # the next second tries again
