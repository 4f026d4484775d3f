"""Keep-alive clients looping writes and reads through nginx, every outcome recorded.

Each client has one keep-alive connection and loops: POST an item, GET it, PUT
it, POST a job. Every request's method, path, wall-clock start and end, and
status (or the exception) is kept, so a test can say exactly what failed and
when.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp


@dataclass(frozen=True)
class Outcome:
    method: str
    path: str
    started: float  # time.time()
    ended: float
    status: int | None  # None: no HTTP answer at all
    error: str = ""

    @property
    def failed(self) -> bool:
        return self.status is None or self.status >= 400


@dataclass
class Load:
    url: str
    clients: int = 6
    outcomes: list[Outcome] = field(default_factory=list)
    jobs: list[str] = field(default_factory=list)  # ids of the jobs answered 202
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._client(n)) for n in range(self.clients)]

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)

    def failures(self) -> list[Outcome]:
        return [outcome for outcome in self.outcomes if outcome.failed]

    async def _client(self, number: int) -> None:
        connector = aiohttp.TCPConnector(limit=1)
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            round_ = 0
            while not self._stop.is_set():
                round_ += 1
                item = {"name": f"load-{number}-{round_}", "price": round_}
                created = await self._call(session, "POST", "/api/items", item)
                if created is not None:
                    path = f"/api/items/{created['id']}"
                    await self._call(session, "GET", path)
                    await self._call(session, "PUT", path, {**item, "price": round_ + 1})
                job = await self._call(
                    session, "POST", "/api/jobs", {"task": "demo.echo", "args": {"n": round_}}
                )
                if job is not None:
                    self.jobs.append(job["id"])

    async def _call(
        self, session: aiohttp.ClientSession, method: str, path: str, body: Any = None
    ) -> dict[str, Any] | None:
        """The JSON body of a 2xx answer, else None (the outcome is recorded either way)."""
        started = time.time()
        try:
            async with session.request(method, self.url + path, json=body) as response:
                data = await response.json(content_type=None)
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.outcomes.append(Outcome(method, path, started, time.time(), None, repr(exc)))
            return None
        error = "" if status < 400 else str(data)
        self.outcomes.append(Outcome(method, path, started, time.time(), status, error))
        return data if status < 400 else None


async def wait_for_jobs(url: str, ids: list[str], *, timeout: float = 60.0) -> dict[str, str]:
    """Poll each job until it succeeded or `timeout`; the last status of each."""
    statuses = dict.fromkeys(ids, "unknown")
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        pending = list(ids)
        while pending and time.monotonic() < deadline:
            still = []
            for job_id in pending:
                async with session.get(f"{url}/api/jobs/{job_id}") as response:
                    body = await response.json()
                statuses[job_id] = body.get("status", str(response.status))
                if statuses[job_id] != "succeeded":
                    still.append(job_id)
            pending = still
            if pending:
                await asyncio.sleep(0.2)
    return statuses
