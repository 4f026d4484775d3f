"""The embedded queue: a durable queue in one SQLite file under `server.data_dir`.

Every message is a row of `queue_messages`. A row is deliverable when its
`available_at` has passed; claiming it (one atomic UPDATE … RETURNING) moves
`available_at` a lease into the future and records the claimer, the way SQS's
visibility timeout works — so a job whose worker died (SIGKILL, power cut) is
offered again once the lease runs out, while a live worker renews the leases
of everything it holds every `lease / 3` seconds. A consumer claims up to
`prefetch` messages in one statement and hands them out one by one. Settling
a delivery is one statement conditioned on the claim still being ours (owner
and delivery count), so a worker that lost its lease can never settle someone
else's claim. Every statement goes through the file's group commit
(`app.sharding.group_commit`): one transaction and one sync for a loop turn's.

Processes that share `data_dir` (`run.py serve` and `run.py worker` on one
host) share the queue: SQLite serializes the claims. A publish wakes this
process's consumer at once; other processes notice within `poll_interval`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

from app.core.background import BackgroundTask
from app.queue.backend import (
    DeadLetter,
    Delivery,
    QueueBackend,
    QueueStats,
    QueueUnavailable,
    Requeue,
)
from app.queue.message import BadMessage, JobMessage
from app.sharding.backend import ShardUnavailable
from app.sharding.sqlite import SQLiteBackend

log = logging.getLogger("keel.queue")

_SCHEMA = (
    """
    CREATE TABLE IF NOT EXISTS queue_messages (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        queue TEXT NOT NULL,
        job_id TEXT NOT NULL,
        body BLOB NOT NULL,
        available_at REAL NOT NULL,
        lease_owner TEXT NOT NULL DEFAULT '',
        deliveries INTEGER NOT NULL DEFAULT 0,
        reason TEXT NOT NULL DEFAULT ''
    )
    """,
    "CREATE INDEX IF NOT EXISTS queue_messages_ready ON queue_messages (queue, available_at, seq)",
    "CREATE INDEX IF NOT EXISTS queue_messages_owner ON queue_messages (lease_owner)"
    " WHERE lease_owner != ''",
)


@contextlib.contextmanager
def _translated() -> Iterator[None]:
    try:
        yield
    except ShardUnavailable as exc:
        raise QueueUnavailable(f"embedded queue: {exc.reason}") from exc


class _Claim(Delivery):
    """A claimed row: settled by statements that match only while the claim is ours."""

    def __init__(self, queue: EmbeddedQueue, seq: int, deliveries: int, message: JobMessage):
        self._queue = queue
        self.seq = seq
        self.deliveries = deliveries
        self.message = message
        self.redeliveries = deliveries - 1

    async def _settle(self, sql: str, *args: Any) -> None:
        changed = await self._queue._write(
            sql + " WHERE seq = $1 AND lease_owner = $2 AND deliveries = $3 RETURNING seq",
            self.seq,
            self._queue.owner,
            self.deliveries,
            *args,
        )
        self._queue._held.discard(self.seq)
        if not changed:
            raise QueueUnavailable(f"job {self.message.id}: lease lost (another worker took it)")

    async def ack(self) -> None:
        await self._settle("DELETE FROM queue_messages")

    async def retry(self, message: JobMessage, delay: float) -> None:
        await self._settle(
            "UPDATE queue_messages SET body = $4, available_at = $5, lease_owner = '',"
            " deliveries = 0",
            message.encode(),
            self._queue.clock() + delay,
        )
        self._queue._wake.set()

    async def bury(self, message: JobMessage, reason: str) -> None:
        await self._settle(
            "UPDATE queue_messages SET queue = $4, body = $5, reason = $6, lease_owner = '',"
            " deliveries = 0",
            self._queue.dead_queue,
            message.encode(),
            reason,
        )

    async def release(self) -> None:
        # A return at shutdown is not a failed delivery: it must not count
        # towards the poison limit.
        try:
            await self._settle(
                "UPDATE queue_messages SET available_at = $4, lease_owner = '',"
                " deliveries = deliveries - 1",
                self._queue.clock(),
            )
        except QueueUnavailable as exc:
            log.warning("could not return job %s (its lease will expire): %s", self.message.id, exc)


class EmbeddedQueue(QueueBackend):
    kind: ClassVar[str] = "embedded"

    def __init__(
        self,
        path: Path,
        name: str,
        *,
        owner: str,
        lease: float,
        poll_interval: float,
        prefetch: int = 1,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = path
        self.main_queue = f"{name}.jobs"
        self.dead_queue = f"{name}.dead"
        self.owner = owner
        self.lease = lease
        self.poll_interval = poll_interval
        self.prefetch = max(1, prefetch)
        self.clock = clock
        self._db = SQLiteBackend("queue", str(path))
        self._wake = asyncio.Event()
        self._consuming = False
        self._held: set[int] = set()
        self._claimed: collections.deque[_Claim] = collections.deque()  # not yet handed out
        self._renewing = BackgroundTask("keel.queue.leases", self._renew_leases)
        self._stop = asyncio.Event()
        self._error = ""

    @property
    def connected(self) -> bool:
        return not self._error

    @property
    def last_error(self) -> str:
        return self._error

    @property
    def consuming(self) -> bool:
        return self._consuming

    async def open(self) -> None:
        with _translated():
            await self._db.open()
            async with self._db.transaction() as tx:
                for statement in _SCHEMA:
                    await tx.execute(statement)
        self._renewing.start()

    async def close(self) -> None:
        self._stop.set()
        await self._renewing.stop()
        await self._db.close()

    async def _write(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        """One statement, committed on its own (one hop to SQLite's thread)."""
        try:
            rows = await self._db.write(sql, *args)
        except ShardUnavailable as exc:
            self._error = exc.reason
            raise QueueUnavailable(f"embedded queue: {exc.reason}") from exc
        self._error = ""
        return rows

    async def _fetch(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        with _translated():
            return await self._db.fetch(sql, *args)

    async def publish(self, message: JobMessage, delay: float = 0.0) -> None:
        await self._write(
            "INSERT INTO queue_messages (queue, job_id, body, available_at)"
            " VALUES ($1, $2, $3, $4)",
            self.main_queue,
            message.id,
            message.encode(),
            self.clock() + max(0.0, delay),
        )
        self._wake.set()

    async def start_consuming(self) -> None:
        self._consuming = True

    async def stop_consuming(self) -> None:
        self._consuming = False
        while self._claimed:  # claimed ahead, never handed out: back to the queue
            await self._claimed.popleft().release()
        self._wake.set()  # a waiting receive() returns to see it

    async def receive(self) -> Delivery:
        while True:
            if not self._consuming:
                raise QueueUnavailable("not consuming")
            if self._claimed:
                return self._claimed.popleft()
            self._wake.clear()  # before looking: a publish from now on wakes the wait below
            claims = await self._claim(self.prefetch)
            if claims:
                self._claimed.extend(claims[1:])
                return claims[0]
            wait = self.poll_interval
            row = await self._fetch(
                "SELECT min(available_at) AS due FROM queue_messages WHERE queue = $1",
                self.main_queue,
            )
            if row and row[0]["due"] is not None:
                wait = min(wait, max(0.0, float(row[0]["due"]) - self.clock()))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._wake.wait()

    async def _claim(self, limit: int) -> list[_Claim]:
        """Claim up to `limit` deliverable messages in one statement, oldest first (the
        consumer's prefetch: those not yet handed out are held, their leases renewed)."""
        now = self.clock()
        rows = await self._write(
            "UPDATE queue_messages SET available_at = $1, lease_owner = $2,"
            " deliveries = deliveries + 1"
            " WHERE seq IN (SELECT seq FROM queue_messages"
            "   WHERE queue = $3 AND available_at <= $4 ORDER BY available_at, seq LIMIT $5)"
            " RETURNING seq, body, deliveries",
            now + self.lease,
            self.owner,
            self.main_queue,
            now,
            limit,
        )
        claims: list[_Claim] = []
        for row in sorted(rows, key=lambda row: int(row["seq"])):
            seq, deliveries = int(row["seq"]), int(row["deliveries"])
            try:
                message = JobMessage.decode(row["body"])
            except BadMessage as exc:
                await self._write(
                    "UPDATE queue_messages SET queue = $2, reason = $3, lease_owner = ''"
                    " WHERE seq = $1",
                    seq,
                    self.dead_queue,
                    f"unreadable message: {exc}",
                )
                continue
            self._held.add(seq)
            claims.append(_Claim(self, seq, deliveries, message))
        return claims

    async def _renew_leases(self) -> None:
        """Push out the lease of every row this process holds, every lease/3 seconds."""
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.lease / 3):
                    await self._stop.wait()
            if self._held and not self._stop.is_set():
                try:
                    await self._write(
                        "UPDATE queue_messages SET available_at = $1 WHERE lease_owner = $2",
                        self.clock() + self.lease,
                        self.owner,
                    )
                except QueueUnavailable as exc:
                    log.warning("could not renew job leases: %s", exc)

    async def stats(self) -> QueueStats:
        rows = await self._fetch(
            "SELECT queue, count(*) AS n FROM queue_messages"
            " WHERE (queue = $1 AND available_at <= $3 AND lease_owner = '') OR queue = $2"
            " GROUP BY queue",
            self.main_queue,
            self.dead_queue,
            self.clock(),
        )
        counts = {row["queue"]: int(row["n"]) for row in rows}
        return QueueStats(
            depth=counts.get(self.main_queue, 0),
            dead=counts.get(self.dead_queue, 0),
            consumers=1 if self._consuming else 0,
        )

    async def dead_letters(self, limit: int) -> list[DeadLetter]:
        rows = await self._fetch(
            "SELECT body, reason FROM queue_messages WHERE queue = $1 ORDER BY seq DESC LIMIT $2",
            self.dead_queue,
            limit,
        )
        return [DeadLetter(JobMessage.decode(row["body"]), row["reason"]) for row in rows]

    async def requeue_dead(self, job_ids: frozenset[str] | None, requeue: Requeue) -> int:
        moved = 0
        async for seq, message in self._dead_rows(job_ids):
            if await requeue(message):
                await self._write("DELETE FROM queue_messages WHERE seq = $1", seq)
                moved += 1
        return moved

    async def _dead_rows(
        self, job_ids: frozenset[str] | None
    ) -> AsyncIterator[tuple[int, JobMessage]]:
        after = 0
        while True:
            rows = await self._fetch(
                "SELECT seq, job_id, body FROM queue_messages WHERE queue = $1 AND seq > $2"
                " ORDER BY seq LIMIT 100",
                self.dead_queue,
                after,
            )
            if not rows:
                return
            for row in rows:
                after = int(row["seq"])
                if job_ids is None or row["job_id"] in job_ids:
                    try:
                        yield after, JobMessage.decode(row["body"])
                    except BadMessage:
                        continue  # an unreadable dead message can only be purged

    async def purge_dead(self, job_ids: frozenset[str] | None = None) -> int:
        if job_ids is None:
            purged = await self._write(
                "DELETE FROM queue_messages WHERE queue = $1 RETURNING seq", self.dead_queue
            )
            return len(purged)
        count = 0
        async for seq, _ in self._dead_rows(job_ids):
            count += len(
                await self._write("DELETE FROM queue_messages WHERE seq = $1 RETURNING seq", seq)
            )
        return count
