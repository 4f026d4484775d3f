"""An outage of one dependency as this process sees it: since when, why, logged once each way.

Every user of a dependency that can go away (Redis for the limiter, the
heartbeat, the WebSocket bus and the cache; a shard; the broker) keeps one
`Outage`: `failed()` on every failure (the first one logs a warning saying
what the process does meanwhile; later ones only update the reason),
`recovered()` on the first success after (one info line with how long it
lasted). `since` and `reason` are what `state()`, `/readyz` and the dashboard show.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable


def describe(error: BaseException | str) -> str:
    """A reason worth showing: the error's text, or its type when it has none."""
    if isinstance(error, str):
        return error
    return str(error) or type(error).__name__


class Outage:
    """`what` (e.g. "rate limits: redis") is down since `since`, because `reason`."""

    def __init__(
        self,
        what: str,
        log: logging.Logger,
        *,
        level: int = logging.WARNING,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.what = what
        self._log = log
        self.level = level
        self._clock = clock
        self.since: float | None = None
        self.reason = ""

    @property
    def active(self) -> bool:
        return self.since is not None

    def failed(self, error: BaseException | str, meanwhile: str = "") -> bool:
        """Note a failure; True (and one log line) when it starts an outage.

        `meanwhile` says what this process does until it ends.
        """
        self.reason = describe(error)
        if self.since is not None:
            return False
        self.since = self._clock()
        suffix = f"; {meanwhile}" if meanwhile else ""
        self._log.log(self.level, "%s unavailable (%s)%s", self.what, self.reason, suffix)
        return True

    def recovered(self, restored: str = "") -> bool:
        """Note a success; True (and one log line) when it ends an outage."""
        if self.since is None:
            return False
        lasted = self._clock() - self.since
        self.since = None
        self.reason = ""
        suffix = f"; {restored}" if restored else ""
        self._log.info("%s answers again after %.1fs%s", self.what, lasted, suffix)
        return True
