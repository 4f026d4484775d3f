"""An accepted job's first publish, after its 202: the job is accepted before it.

A 202 means the job's record is committed — queued and unpublished, which
makes the record its own outbox entry — so the job will run whether or not
this publish succeeds. Waiting for the broker's confirm before answering
would add a round trip to the broker to every submission and cap how many
jobs a client with a fixed number of requests in flight can hand over. So
the publish goes on after the response: confirmed, the record is marked
published (many marks per statement, `app.queue.published`); not confirmed
(the broker is down, the guard refuses), the record is handed to the outbox
relay at once. Either way the relays keep off the job for `publish_window`
after it was accepted, so it is normally published once.

If the process dies first, the record is still in the outbox: a relay (on any
instance) publishes it once `publish_window` has passed. `close()` gives the
publishes under way a bounded time to finish, then leaves the rest to the
relay the same way.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from app.queue.records import JobRecord

log = logging.getLogger("keel.queue")


class FirstPublishes:
    """Publishes started for accepted jobs, each on its own (many confirms in flight)."""

    def __init__(
        self,
        publish: Callable[[JobRecord], Awaitable[bool]],
        hand_to_relay: Callable[[JobRecord], Awaitable[None]],
    ) -> None:
        self._publish = publish
        self._hand_to_relay = hand_to_relay
        self._pending: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self._pending)

    def start(self, record: JobRecord) -> None:
        """Publish `record`'s first attempt in the background; never raises, never waits."""
        task = asyncio.get_running_loop().create_task(self._run(record))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _run(self, record: JobRecord) -> None:
        if not await self._publish(record):
            await self._hand_to_relay(record)

    async def close(self, within: float) -> None:
        """Let the publishes under way finish (`within` seconds); the relay takes the rest."""
        if not self._pending:
            return
        done, left = await asyncio.wait(set(self._pending), timeout=within)
        for task in done:
            if not task.cancelled() and (error := task.exception()) is not None:
                log.error("a job's first publish failed", exc_info=error)
        if left:
            log.warning(
                "%d accepted job(s) not published before shutdown: the outbox relay publishes"
                " them (on any instance) once their publish window has passed",
                len(left),
            )
            for task in left:
                task.cancel()
            await asyncio.wait(left, timeout=1.0)
