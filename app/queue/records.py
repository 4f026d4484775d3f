"""Job records on the sharded storage: every instance sees every job.

A job's record lives on the shard that owns its id (table `jobs`); an
idempotency key lives on the shard that owns the key (table `job_keys`). The
record is the truth about a job — its status, attempts, result and error —
and also its outbox entry: `published` stays 0 until the queue confirmed the
job's first message, and `relay_until` is a short claim that keeps two relays
(or a relay and the request that created the job) from publishing it at once.

Statuses: queued → running → succeeded | failed (will retry) → … → dead.
Outcome writes are conditioned on the attempt they belong to, so a stale
worker can never overwrite a newer attempt's outcome.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from app.core.json_codec import dumps, loads
from app.items.model import IdGenerator, now_iso
from app.queue.message import JobMessage
from app.sharding.backend import Row, ShardUnavailable
from app.sharding.shards import Shard, ShardSet

Status = Literal["queued", "running", "succeeded", "failed", "dead"]
STATUSES: tuple[Status, ...] = ("queued", "running", "succeeded", "failed", "dead")
FINISHED: frozenset[str] = frozenset({"succeeded", "dead"})
IDEMPOTENCY_WINDOW = 24 * 3600.0  # seconds a key names the same job

_COLUMNS = (
    "id, task, args, status, attempts, max_attempts, result, error, idempotency_key,"
    " run_at, published, relay_until, version, created_at, updated_at"
)


@dataclass(frozen=True)
class JobRecord:
    id: str
    task: str
    args: dict[str, Any]
    status: Status
    attempts: int  # attempts started (a shutdown that returns one gives it back)
    max_attempts: int
    result: Any
    error: str | None
    idempotency_key: str | None
    run_at: float  # epoch seconds: not to run before
    published: bool
    created_at: str
    updated_at: str

    @classmethod
    def from_row(cls, row: Row) -> JobRecord:
        return cls(
            id=row["id"],
            task=row["task"],
            args=loads(row["args"]),
            status=row["status"],
            attempts=int(row["attempts"]),
            max_attempts=int(row["max_attempts"]),
            result=loads(row["result"]) if row["result"] is not None else None,
            error=row["error"],
            idempotency_key=row["idempotency_key"],
            run_at=float(row["run_at"]),
            published=bool(row["published"]),
            created_at=row["created_at"],
            updated_at=row["updated_at"],
        )

    def public(self) -> dict[str, Any]:
        """The job as `GET /api/jobs/{id}` shows it."""
        return {
            "id": self.id,
            "task": self.task,
            "status": self.status,
            "attempts": self.attempts,
            "result": self.result,
            "error": self.error,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }

    def message(self, attempt: int = 1) -> JobMessage:
        return JobMessage(self.id, self.task, self.args, attempt, self.max_attempts)


@dataclass(frozen=True)
class KeyClaim:
    """What an idempotency key names: `job_id`, and whether this request made it so."""

    job_id: str
    fingerprint: str
    fresh: bool


def fingerprint(task: str, args: Any, delay: float, max_attempts: int) -> str:
    """The request an idempotency key was first used for, as a digest."""
    canonical = dumps({"task": task, "args": args, "delay": delay, "max_attempts": max_attempts})
    return hashlib.sha256(canonical).hexdigest()


# The records an attempt may run on, or record its outcome on: not finished, not at a
# later attempt, not failed at this very attempt. `decide` runs exactly these (poison
# is the delivery's to judge, before). $1 is the id, $3 the attempt.
_STARTABLE = (
    "attempts <= $3 AND status IN ('queued', 'running', 'failed')"
    " AND NOT (status = 'failed' AND attempts = $3)"
)


class JobStore:
    def __init__(self, shards: ShardSet, clock: Callable[[], float] = time.time) -> None:
        self.shards = shards
        self.clock = clock
        self.new_id = IdGenerator(clock)

    def _shard(self, job_id: str) -> Shard:
        return self.shards.for_key(job_id)

    async def get(self, job_id: str) -> JobRecord | None:
        row = await self._shard(job_id).fetchrow(
            f"SELECT {_COLUMNS} FROM jobs WHERE id = $1", job_id
        )
        return JobRecord.from_row(row) if row else None

    async def insert(
        self,
        job_id: str,
        task: str,
        args: dict[str, Any],
        *,
        max_attempts: int,
        run_at: float,
        relay_after: float,
        idempotency_key: str | None = None,
    ) -> tuple[JobRecord, bool]:
        """Write a queued job (not yet published; no relay takes it before `relay_after`).

        Returns (record, inserted): with an id that exists already, the existing record.
        """
        now = now_iso()
        # RETURNING only the id: the record is what was just written (and a row
        # turned back into a record costs the writer's thread and the loop).
        inserted = await self._shard(job_id).write(
            f"INSERT INTO jobs ({_COLUMNS})"
            " VALUES ($1, $2, $3, 'queued', 0, $4, NULL, NULL, $5, $6, 0, $7, 1, $8, $8)"
            " ON CONFLICT (id) DO NOTHING RETURNING id",
            job_id,
            task,
            dumps(args).decode(),
            max_attempts,
            idempotency_key,
            run_at,
            relay_after,
            now,
        )
        if inserted:
            record = JobRecord(
                id=job_id,
                task=task,
                args=args,
                status="queued",
                attempts=0,
                max_attempts=max_attempts,
                result=None,
                error=None,
                idempotency_key=idempotency_key,
                run_at=run_at,
                published=False,
                created_at=now,
                updated_at=now,
            )
            return record, True
        existing = await self.get(job_id)
        if existing is None:  # deleted by retention in between: vanishingly rare
            raise ShardUnavailable(self._shard(job_id).name, "job record vanished; retry")
        return existing, False

    # --- idempotency keys ------------------------------------------------------------

    async def claim_key(self, key: str, job_id: str, digest: str) -> KeyClaim:
        """Bind `key` to `job_id` unless it names another job made within the window."""
        shard = self.shards.for_key(key)
        now = self.clock()
        for _ in range(3):
            inserted = await shard.write(
                "INSERT INTO job_keys (key, job_id, fingerprint, created, version)"
                " VALUES ($1, $2, $3, $4, 1) ON CONFLICT (key) DO NOTHING RETURNING job_id",
                key,
                job_id,
                digest,
                now,
            )
            if inserted:
                return KeyClaim(job_id, digest, fresh=True)
            existing = await shard.fetchrow(
                "SELECT job_id, fingerprint, created FROM job_keys WHERE key = $1", key
            )
            if existing is None:
                continue  # expired and deleted meanwhile: claim it again
            if float(existing["created"]) >= now - IDEMPOTENCY_WINDOW:
                return KeyClaim(existing["job_id"], existing["fingerprint"], fresh=False)
            replaced = await shard.write(
                "UPDATE job_keys SET job_id = $2, fingerprint = $3, created = $4,"
                " version = version + 1 WHERE key = $1 AND job_id = $5 RETURNING key",
                key,
                job_id,
                digest,
                now,
                existing["job_id"],
            )
            if replaced:
                return KeyClaim(job_id, digest, fresh=True)
        raise ShardUnavailable(shard.name, f"idempotency key {key!r} keeps changing; retry")

    # --- the outbox --------------------------------------------------------------------

    async def mark_published(self, job_id: str) -> None:
        await self._shard(job_id).write("UPDATE jobs SET published = 1 WHERE id = $1", job_id)

    async def mark_published_many(self, shard: Shard, job_ids: Sequence[str]) -> int:
        """Mark these jobs of `shard` published, in one statement; how many rows changed
        (the rows that say so already are left alone: nothing is written for them)."""
        marks = ", ".join(f"${n}" for n in range(1, len(job_ids) + 1))
        changed = await shard.write(
            f"UPDATE jobs SET published = 1 WHERE id IN ({marks}) AND published = 0 RETURNING id",
            *job_ids,
        )
        return len(changed)

    async def hand_to_relay(self, job_id: str) -> None:
        """Publishing failed: let the relay take the job at once."""
        await self._shard(job_id).write(
            "UPDATE jobs SET relay_until = 0 WHERE id = $1 AND published = 0", job_id
        )

    async def claim_unpublished(self, shard: Shard, limit: int, lease: float) -> list[JobRecord]:
        """Up to `limit` unpublished jobs of `shard` that nobody has claimed, claimed for
        `lease` seconds (one statement: two relays never claim the same job)."""
        now = self.clock()
        # A read first: the outbox is empty nearly always, and a read takes no write lock.
        if not await shard.fetch(
            "SELECT id FROM jobs WHERE published = 0 AND relay_until <= $1 LIMIT 1", now
        ):
            return []
        rows = await shard.write(
            "UPDATE jobs SET relay_until = $1 WHERE id IN ("
            "  SELECT id FROM jobs WHERE published = 0 AND relay_until <= $2"
            "  ORDER BY relay_until LIMIT $3)"
            f" AND published = 0 AND relay_until <= $2 RETURNING {_COLUMNS}",
            now + lease,
            now,
            limit,
        )
        return [JobRecord.from_row(row) for row in rows]

    async def outbox_backlog(self) -> int:
        """Accepted jobs that wait for the relay (not published, and no longer held by
        the request that accepted them or by a relay's claim), over every shard that
        answers: what `claim_unpublished` would take now. A job being published, or
        published and not yet marked so, is not in it."""
        now = self.clock()
        total = 0
        for shard in self.shards:
            try:
                row = await shard.fetchrow(
                    "SELECT count(*) AS n FROM jobs WHERE published = 0 AND relay_until <= $1",
                    now,
                )
            except ShardUnavailable:
                continue
            total += int(row["n"]) if row else 0
        return total

    # --- status changes ----------------------------------------------------------------

    async def _update(self, job_id: str, sql: str, *args: Any) -> JobRecord | None:
        """`UPDATE jobs <sql>` with version and updated_at bumped; $1 id, $2 now, $3… args."""
        assert sql.startswith("SET ")
        rows = await self._shard(job_id).write(
            f"UPDATE jobs SET version = version + 1, updated_at = $2, {sql[4:]}"
            f" RETURNING {_COLUMNS}",
            job_id,
            now_iso(),
            *args,
        )
        return JobRecord.from_row(rows[0]) if rows else None

    async def start(self, job_id: str, attempt: int) -> JobRecord | None:
        """Show the job running at `attempt` if its record still says this attempt is
        to run (`_STARTABLE`); None otherwise. Written only for an attempt that runs
        longer than a moment (the consumer's `SHOW_RUNNING_AFTER`)."""
        return await self._update(
            job_id,
            f"SET status = 'running', attempts = $3, published = 1 WHERE id = $1 AND {_STARTABLE}",
            attempt,
        )

    async def finish(
        self,
        job_id: str,
        attempt: int,
        status: str,
        *,
        result: Any = None,
        error: str | None = None,
    ) -> JobRecord | None:
        """Record the outcome of `attempt` (succeeded, failed or dead) if the record
        still says this attempt is the one to run or running (`_STARTABLE`), whether
        or not it was shown running; None otherwise (stale). A delivery proves the job
        was published."""
        return await self._update(
            job_id,
            "SET status = $4, attempts = $3, published = 1, result = $5, error = $6"
            f" WHERE id = $1 AND {_STARTABLE}",
            attempt,
            status,
            None if result is None else dumps(result).decode(),
            error,
        )

    async def mark_poisoned(self, job_id: str, attempt: int, error: str) -> JobRecord | None:
        """Dead without running again: deliveries of this attempt keep ending with no outcome."""
        return await self._update(
            job_id,
            "SET status = 'dead', attempts = $3, error = $4"
            " WHERE id = $1 AND status != 'succeeded'",
            attempt,
            error,
        )

    async def mark_returned(self, job_id: str, attempt: int) -> JobRecord | None:
        """A running attempt went back to the queue unfinished (shutdown): queued again."""
        return await self._update(
            job_id,
            "SET status = 'queued', attempts = attempts - 1"
            " WHERE id = $1 AND attempts = $3 AND status = 'running'",
            attempt,
        )

    async def mark_requeued(self, job_id: str, relay_after: float) -> JobRecord | None:
        """A dead job starts over: queued, no attempts, back in the outbox."""
        return await self._update(
            job_id,
            "SET status = 'queued', attempts = 0, published = 0, relay_until = $3 WHERE id = $1",
            relay_after,
        )

    # --- retention ---------------------------------------------------------------------

    async def delete_expired(self, retention: float) -> int:
        """Drop idempotency keys past the window and finished jobs past `retention`."""
        now = self.clock()
        deleted = 0
        cutoff = (
            time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now - retention)) if retention else ""
        )
        for shard in self.shards:
            try:
                async with shard.transaction() as tx:
                    await tx.execute(
                        "DELETE FROM job_keys WHERE created < $1", now - IDEMPOTENCY_WINDOW
                    )
                    if cutoff:
                        deleted += await tx.execute(
                            "DELETE FROM jobs WHERE status IN ('succeeded', 'dead')"
                            " AND updated_at < $1",
                            cutoff,
                        )
            except ShardUnavailable:
                continue
        return deleted
