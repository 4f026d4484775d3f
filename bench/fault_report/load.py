"""The HTTP load: cached reads, writes, list pages and job submissions, paced.

Every request goes through nginx, as a client's would, each client on one
keep-alive connection, and each is recorded in the ledger with its own
`X-Request-ID` (nginx's access log then says which instance served it).

- readers GET a random item of the hot set (cached reads);
- writers PUT a random hot item (each answer's version is an acknowledged
  write); every `CREATE_EVERY`-th write makes a new item instead: a GET of
  its id first (404, which the cache remembers), then the PUT that creates it,
  and the id joins the hot set — so a read that still finds "not found" after
  the create was acknowledged is a stale read too;
- listers GET the first page of `/api/items` (every shard answers it);
- submitters POST a `demo.sleep` job with an `Idempotency-Key`.

A client sends its next request at its next tick (its share of the rate),
or at once when the last answer came late: one request in flight per client,
so a slow dependency slows the load rather than piling it up.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import time
from dataclasses import dataclass
from typing import Any

import aiohttp

from bench.fault_report.ledger import Ledger, Read, Request, Write

CREATE_EVERY = 10
JOB_SECONDS = 0.2  # each job's demo.sleep
TIMEOUT = aiohttp.ClientTimeout(total=30)


@dataclass(frozen=True)
class Rates:
    """Requests per second of each kind, and the clients that share them."""

    reads: float = 40.0
    writes: float = 12.0
    lists: float = 4.0
    jobs: float = 6.0
    readers: int = 4
    writers: int = 2
    listers: int = 1
    submitters: int = 2

    def scaled(self, factor: float) -> Rates:
        return Rates(
            self.reads * factor,
            self.writes * factor,
            self.lists * factor,
            self.jobs * factor,
            self.readers,
            self.writers,
            self.listers,
            self.submitters,
        )


class HttpLoad:
    def __init__(self, url: str, ledger: Ledger, run_id: str, rates: Rates) -> None:
        self.url = url
        self.ledger = ledger
        self.run_id = run_id
        self.rates = rates
        self.hot: list[str] = []
        self._ids = itertools.count(1)
        self._writes = itertools.count(1)
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def seed(self, items: int) -> None:
        """Create the hot set (these writes are acknowledged writes like any other)."""
        async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
            for n in range(items):
                item = f"faults-{self.run_id}-{n}"
                status, _ = await self._put(session, item, "seed")
                if status not in (200, 201):
                    raise RuntimeError(f"seeding {item} answered {status}")
                self.hot.append(item)

    def start(self) -> None:
        rates = self.rates
        clients = [
            (self._reader, rates.readers, rates.reads),
            (self._writer, rates.writers, rates.writes),
            (self._lister, rates.listers, rates.lists),
            (self._submitter, rates.submitters, rates.jobs),
        ]
        for loop, count, rate in clients:
            if rate > 0:
                for _ in range(count):
                    self._tasks.append(asyncio.create_task(self._paced(loop, count / rate)))

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)

    async def _paced(self, step: Any, interval: float) -> None:
        connector = aiohttp.TCPConnector(limit=1)
        async with aiohttp.ClientSession(connector=connector, timeout=TIMEOUT) as session:
            # Start at a random point of the interval: clients do not tick together.
            await asyncio.sleep(random.random() * interval)
            tick = time.monotonic()
            while not self._stop.is_set():
                await step(session)
                tick = max(tick + interval, time.monotonic())
                await asyncio.sleep(tick - time.monotonic())

    # --- the clients ------------------------------------------------------------------

    async def _reader(self, session: aiohttp.ClientSession) -> None:
        await self._get_item(session, random.choice(self.hot))

    async def _writer(self, session: aiohttp.ClientSession) -> None:
        if next(self._writes) % CREATE_EVERY:
            await self._put(session, random.choice(self.hot), "write")
            return
        item = f"faults-{self.run_id}-new-{next(self._ids)}"
        await self._get_item(session, item)  # not found: the cache may now remember that
        status, _ = await self._put(session, item, "create")
        if status == 201:
            self.hot.append(item)

    async def _lister(self, session: aiohttp.ClientSession) -> None:
        await self._call(session, "list", "GET", "/api/items?limit=20")

    async def _submitter(self, session: aiohttp.ClientSession) -> None:
        body = {"task": "demo.sleep", "args": {"seconds": JOB_SECONDS}}
        key = f"faults-{self.run_id}-{next(self._ids)}"
        status, data = await self._call(
            session, "job", "POST", "/api/jobs", body, {"Idempotency-Key": key}
        )
        if status == 202 and isinstance(data, dict):
            self.ledger.jobs.setdefault(data["id"], time.time())

    # --- requests ---------------------------------------------------------------------

    async def _get_item(self, session: aiohttp.ClientSession, item: str) -> None:
        started = time.time()
        status, data = await self._call(session, "read", "GET", f"/api/items/{item}")
        if status == 200 and isinstance(data, dict):
            version = int(data["version"])
        elif status == 404:
            version = 0
        else:
            return
        self.ledger.reads.append(Read(item, version, started, time.time()))

    async def _put(
        self, session: aiohttp.ClientSession, item: str, kind: str
    ) -> tuple[int | None, Any]:
        body = {"name": f"{kind} {item}", "price": random.randint(1, 1000)}
        status, data = await self._call(session, kind, "PUT", f"/api/items/{item}", body)
        if status in (200, 201) and isinstance(data, dict):
            self.ledger.writes.append(Write(item, int(data["version"]), time.time()))
        return status, data

    async def _call(
        self,
        session: aiohttp.ClientSession,
        kind: str,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int | None, Any]:
        """Send one request and record it; (status, JSON body), status None without answer."""
        request_id = f"faults-{self.run_id}-r{next(self._ids)}"
        headers = {"X-Request-ID": request_id, **(headers or {})}
        started = time.time()
        try:
            async with session.request(
                method, self.url + path, json=body, headers=headers
            ) as response:
                status = response.status
                text = await response.text()
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.ledger.requests.append(
                Request(
                    kind, method, path, started, time.time(), None, "", "", request_id, repr(exc)
                )
            )
            return None, None
        try:
            data = json.loads(text) if text else None
        except ValueError:
            data = None
        code = shard = ""
        if status >= 400 and isinstance(data, dict) and isinstance(data.get("error"), dict):
            error = data["error"]
            code = str(error.get("code", ""))
            details = error.get("details")
            if isinstance(details, dict):
                shard = str(details.get("shard", ""))
        self.ledger.requests.append(
            Request(kind, method, path, started, time.time(), status, code, shard, request_id)
        )
        return status, data
