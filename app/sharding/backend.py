"""The small interface every shard backend implements, and its errors.

SQL is written once with numbered parameters (`$1`, `$2`, …); the SQLite backend
rewrites them to SQLite's `?1`, `?2`. Rows come back as plain dicts. Driver
errors that mean "this shard cannot answer now" (refused, timed out, locked,
connection lost) are translated at this boundary into `ShardUnavailable`;
anything else (a bug in SQL, a constraint) propagates unchanged.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, ClassVar

from app.errors import DependencyDown
from app.sharding.group_commit import GroupCommit

Row = dict[str, Any]


class ShardUnavailable(DependencyDown):
    """The shard did not answer (down, unreachable, timed out, locked): a 503 naming it."""

    def __init__(self, shard: str, reason: str, retry_after: float = 1.0) -> None:
        super().__init__(shard, reason, retry_after=retry_after, details={"shard": shard})
        self.shard = shard


class Queries(ABC):
    """Statements on a connection or inside a transaction."""

    @abstractmethod
    async def fetch(self, sql: str, *args: Any) -> list[Row]: ...

    @abstractmethod
    async def execute(self, sql: str, *args: Any) -> int:
        """Run a statement; return the number of rows it changed."""

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        rows = await self.fetch(sql, *args)
        return rows[0] if rows else None

    async def fetchval(self, sql: str, *args: Any) -> Any:
        row = await self.fetchrow(sql, *args)
        return next(iter(row.values())) if row else None


class ShardBackend(Queries):
    """One physical shard. `fetch` reads committed data; writes go in `transaction()`.

    Transactions run at the database's default isolation (READ COMMITTED on
    PostgreSQL): a value read in a transaction may change before the
    transaction writes. Guard read-then-write with a condition in the write
    (`UPDATE … WHERE version = $n`) and check the row count; never rely on the
    read alone.
    """

    dialect: ClassVar[str]
    # Called with the number of write transactions committed (the shard's metrics set it).
    on_commit: Callable[[int], None] = staticmethod(lambda count: None)
    # Single-statement writes go through it (`write`): see app/sharding/group_commit.py.
    writes: GroupCommit | None = None

    @abstractmethod
    async def open(self) -> None:
        """Connect; raise `ShardUnavailable` if the shard cannot be reached."""

    @abstractmethod
    async def close(self) -> None: ...

    @abstractmethod
    def transaction(self) -> AbstractAsyncContextManager[Queries]:
        """A transaction: committed on normal exit, rolled back on an exception."""

    async def write(self, sql: str, *args: Any) -> list[Row]:
        """One statement in a transaction of its own; the rows it returns (RETURNING).

        Backends run it in autocommit where they can: one round trip, not three."""
        async with self.transaction() as tx:
            return await tx.fetch(sql, *args)

    @abstractmethod
    async def run_script(self, tx: Queries, script: str) -> None:
        """Run a multi-statement migration script inside `tx`."""

    async def ping(self) -> None:
        await self.fetch("SELECT 1 AS ok")

    async def lock_schema(self, tx: Queries) -> None:
        """Serialize schema changes across processes until `tx` ends (migrations)."""
