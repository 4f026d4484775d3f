"""Follows every accepted job through the API until it succeeded.

Each job not yet seen succeeded is asked for (`GET /api/jobs/{id}`, through
nginx) at most once per `ASK_EVERY` seconds, starting once it has had time
to run. What it said last goes into the ledger; a succeeded job's end is its
record's `updated_at`, the server's own time of the outcome. These requests
are not part of the load: they are how the report learns the truth.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import aiohttp

from bench.fault_report.ledger import JobEnd, Ledger

ASK_EVERY = 1.0
FIRST_ASK_AFTER = 0.5
CONCURRENCY = 4


def server_time(stamp: str) -> float:
    """A record's timestamp ("2024-05-01T12:00:00.123Z") as time.time() seconds."""
    parsed = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ")
    return parsed.replace(tzinfo=UTC).timestamp()


class JobTracker:
    def __init__(self, url: str, ledger: Ledger) -> None:
        self.url = url
        self.ledger = ledger
        self._asked: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task

    def pending(self, since: float = 0.0, until: float = float("inf")) -> list[str]:
        """Jobs accepted from `since` until `until` that were not yet seen succeeded."""
        return [
            job
            for job, at in list(self.ledger.jobs.items())
            if since <= at < until
            and ((end := self.ledger.job_ends.get(job)) is None or end.status != "succeeded")
        ]

    async def settle(self, since: float, within: float) -> bool:
        """Until every job accepted from `since` until now succeeded; False after `within` s."""
        deadline = time.monotonic() + within
        until = time.time()
        while self.pending(since, until):
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.2)
        return True

    async def _run(self) -> None:
        connector = aiohttp.TCPConnector(limit=CONCURRENCY)
        timeout = aiohttp.ClientTimeout(total=10)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            while not self._stop.is_set():
                now = time.time()
                due = [
                    job
                    for job in self.pending()
                    if now - self.ledger.jobs[job] >= FIRST_ASK_AFTER
                    and now - self._asked.get(job, 0.0) >= ASK_EVERY
                ]
                await asyncio.gather(*(self._ask(session, job) for job in due))
                await asyncio.sleep(0.2)

    async def _ask(self, session: aiohttp.ClientSession, job: str) -> None:
        self._asked[job] = time.time()
        try:
            async with session.get(f"{self.url}/api/jobs/{job}") as response:
                if response.status == 404:
                    self.ledger.job_ends[job] = JobEnd("missing", time.time())
                    return
                if response.status != 200:
                    return  # the shard may be down: ask again later
                record = await response.json()
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return
        status = str(record["status"])
        at = server_time(record["updated_at"]) if status == "succeeded" else time.time()
        self.ledger.job_ends[job] = JobEnd(status, at)
