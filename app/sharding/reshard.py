"""Move rows whose owning shard changed after `sharding.shards` changed.

For each row on a shard that no longer owns it: copy it to its owner (an
upsert that never replaces a newer version), read it back to verify, then
delete it from the old shard only if it is still the version that was copied.
At every moment a row exists on its old shard, its new one, or both, so an
interrupted run loses nothing and a second run finishes the job; a row changed
meanwhile on the old shard stays there and is moved by the next run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from app.sharding.backend import Row
from app.sharding.shards import Shard, ShardSet


@dataclass(frozen=True)
class ShardedTable:
    """A table whose rows live on the shard that owns `key`; `version` orders copies."""

    name: str
    key: str
    columns: tuple[str, ...]
    version: str = "version"


ITEMS_TABLE = ShardedTable(
    "items", "id", ("id", "name", "price", "tags", "version", "created_at", "updated_at")
)
# The queue plugin's job records (by job id) and idempotency keys (by key).
JOBS_TABLE = ShardedTable(
    "jobs",
    "id",
    (
        "id",
        "task",
        "args",
        "status",
        "attempts",
        "max_attempts",
        "result",
        "error",
        "idempotency_key",
        "run_at",
        "published",
        "relay_until",
        "version",
        "created_at",
        "updated_at",
    ),
)
JOB_KEYS_TABLE = ShardedTable(
    "job_keys", "key", ("key", "job_id", "fingerprint", "created", "version")
)
SHARDED_TABLES: tuple[ShardedTable, ...] = (ITEMS_TABLE, JOBS_TABLE, JOB_KEYS_TABLE)


@dataclass
class ShardCounts:
    scanned: int = 0
    moved_out: int = 0
    moved_in: int = 0
    skipped_changed: int = 0  # changed on the old shard while being moved: left for the next run


@dataclass
class ReshardReport:
    dry_run: bool
    shards: dict[str, ShardCounts] = field(default_factory=dict)

    @property
    def moved(self) -> int:
        return sum(c.moved_out for c in self.shards.values())


Progress = Callable[[int, int], None]  # (rows scanned so far, rows in total)


def _upsert_sql(table: ShardedTable) -> str:
    columns = ", ".join(table.columns)
    values = ", ".join(f"${i}" for i in range(1, len(table.columns) + 1))
    updates = ", ".join(f"{c} = excluded.{c}" for c in table.columns if c != table.key)
    return (
        f"INSERT INTO {table.name} ({columns}) VALUES ({values})"
        f" ON CONFLICT ({table.key}) DO UPDATE SET {updates}"
        f" WHERE {table.name}.{table.version} <= excluded.{table.version}"
    )


async def _move(table: ShardedTable, row: Row, source: Shard, owner: Shard) -> bool:
    """Copy, verify, delete; False if the row changed on `source` meanwhile."""
    key, version = row[table.key], row[table.version]
    async with owner.transaction() as tx:
        await tx.execute(_upsert_sql(table), *(row[c] for c in table.columns))
    copied = await owner.fetchrow(
        f"SELECT {table.version} AS v FROM {table.name} WHERE {table.key} = $1", key
    )
    if copied is None or copied["v"] < version:
        raise RuntimeError(f"{table.name} {key}: copy to {owner.name} did not verify")
    async with source.transaction() as tx:
        deleted = await tx.execute(
            f"DELETE FROM {table.name} WHERE {table.key} = $1 AND {table.version} = $2",
            key,
            version,
        )
    return bool(deleted)


async def reshard(
    shards: ShardSet,
    *,
    dry_run: bool = False,
    batch: int = 500,
    progress: Progress | None = None,
    tables: tuple[ShardedTable, ...] = SHARDED_TABLES,
) -> ReshardReport:
    report = ReshardReport(dry_run, {s.name: ShardCounts() for s in shards})
    total = 0
    for table in tables:
        for shard in shards:
            row = await shard.fetchrow(f"SELECT count(*) AS n FROM {table.name}")
            total += int(row["n"]) if row else 0
    scanned = 0
    for table in tables:
        for source in shards:
            counts = report.shards[source.name]
            after = ""
            while True:
                rows = await source.fetch(
                    f"SELECT {', '.join(table.columns)} FROM {table.name}"
                    f" WHERE {table.key} > $1 ORDER BY {table.key} LIMIT $2",
                    after,
                    batch,
                )
                if not rows:
                    break
                after = rows[-1][table.key]
                for row in rows:
                    counts.scanned += 1
                    owner = shards.for_key(row[table.key])
                    if owner is source:
                        continue
                    if dry_run or await _move(table, row, source, owner):
                        counts.moved_out += 1
                        report.shards[owner.name].moved_in += 1
                    else:
                        counts.skipped_changed += 1
                scanned += len(rows)
                if progress is not None:
                    progress(scanned, max(total, scanned))
    return report
