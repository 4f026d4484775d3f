"""A PostgreSQL shard through an asyncpg pool, with short timeouts.

Single-statement writes go through group commit (`app.sharding.group_commit`):
the writes of one event-loop turn, and those sent while a batch runs, are one
transaction on one pooled connection — one commit (one WAL flush) for the
batch. asyncpg sends a connection's statements one after another (it cannot
pipeline different statements), so a batch is kept short (`MAX_BATCH`). A
statement that fails rolls its batch back; each statement of it then runs
again on its own, so only the failing ones fail. Reads use the pool directly,
any number at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import asyncpg

from app.sharding.backend import Queries, Row, ShardBackend, ShardUnavailable
from app.sharding.group_commit import Closed, GroupCommit, Rows, Statement

_SCHEMA_LOCK = 0x6B65656C  # "keel": the advisory lock id that serializes migrations
MAX_BATCH = 32  # statements in one write transaction (each one round trip)

# What asyncpg raises when the server cannot answer now (as opposed to bad SQL).
_UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncio.TimeoutError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.QueryCanceledError,
)


def _classified(shard: str, exc: BaseException) -> BaseException:
    """What a failed statement tells its caller: `ShardUnavailable`, or the error itself."""
    if isinstance(exc, _UNAVAILABLE) or (
        isinstance(exc, asyncpg.exceptions.InterfaceError) and "clos" in str(exc).lower()
    ):
        unavailable = ShardUnavailable(shard, str(exc) or type(exc).__name__)
        unavailable.__cause__ = exc
        return unavailable
    return exc


@contextmanager
def _translated(shard: str) -> Iterator[None]:
    try:
        yield
    except _UNAVAILABLE as exc:
        raise ShardUnavailable(shard, str(exc) or type(exc).__name__) from exc
    except asyncpg.exceptions.InterfaceError as exc:
        # InterfaceError also means a bug in the call (wrong argument count):
        # only a closed connection or pool is an outage.
        if "clos" in str(exc).lower():
            raise ShardUnavailable(shard, str(exc)) from exc
        raise


# What one statement can fail with: the server's errors, asyncpg's argument checks, the link.
_STATEMENT_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.PostgresError,
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.DataError,
    ValueError,
    TypeError,
    OverflowError,
    *_UNAVAILABLE,
)


async def _rows(connection: asyncpg.Connection, statement: Statement) -> Rows:
    records = await connection.fetch(statement.sql, *statement.args)
    return [dict(record) for record in records]


class _Connection(Queries):
    def __init__(self, shard: str, connection: asyncpg.Connection | asyncpg.Pool) -> None:
        self.shard = shard
        self.connection = connection

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        with _translated(self.shard):
            records = await self.connection.fetch(sql, *args)
        return [dict(record) for record in records]

    async def execute(self, sql: str, *args: Any) -> int:
        with _translated(self.shard):
            status: str = await self.connection.execute(sql, *args)
        # "UPDATE 3", "INSERT 0 1", "DELETE 0": the last word is the row count.
        last = status.rsplit(" ", 1)[-1]
        return int(last) if last.isdigit() else 0


class PostgresBackend(ShardBackend):
    dialect = "postgresql"
    writes: GroupCommit

    def __init__(
        self,
        shard: str,
        dsn: str,
        *,
        pool_size: int = 10,
        connect_timeout: float = 2.0,
        query_timeout: float = 5.0,
    ) -> None:
        self.shard = shard
        self.dsn = dsn
        self.pool_size = pool_size
        self.connect_timeout = connect_timeout
        self.query_timeout = query_timeout
        self._pool: asyncpg.Pool | None = None
        self.writes = self._group()

    def _group(self) -> GroupCommit:
        # A cancelled caller waits at most this for its batch (each statement has
        # query_timeout; a batch is short).
        return GroupCommit(
            f"{self.shard} writes",
            self._run_writes,
            max_batch=MAX_BATCH,
            settle_timeout=2 * self.query_timeout,
        )

    async def open(self) -> None:
        self.writes = self._group()
        with _translated(self.shard):
            self._pool = await asyncpg.create_pool(
                self.dsn,
                min_size=1,
                max_size=self.pool_size,
                timeout=self.connect_timeout,
                command_timeout=self.query_timeout,
            )

    async def close(self) -> None:
        await self.writes.close()  # writes already taken run before the pool closes
        if self._pool is not None:
            pool, self._pool = self._pool, None
            try:
                async with asyncio.timeout(self.connect_timeout):
                    await pool.close()
            except TimeoutError:
                pool.terminate()  # a shard that stopped answering must not hang shutdown

    def _require(self) -> asyncpg.Pool:
        if self._pool is None:
            raise ShardUnavailable(self.shard, "not connected")
        return self._pool

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        return await _Connection(self.shard, self._require()).fetch(sql, *args)

    async def execute(self, sql: str, *args: Any) -> int:
        return await _Connection(self.shard, self._require()).execute(sql, *args)

    async def write(self, sql: str, *args: Any) -> list[Row]:
        try:
            return await self.writes.run(sql, *args)
        except Closed as exc:
            raise ShardUnavailable(self.shard, "closing") from exc

    async def _run_writes(self, statements: Sequence[Statement]) -> list[Rows | BaseException]:
        pool = self._require()
        with _translated(self.shard):
            connection = await pool.acquire(timeout=self.connect_timeout)
        try:
            if len(statements) > 1:
                try:
                    async with connection.transaction():
                        outcomes: list[Rows | BaseException] = [
                            await _rows(connection, statement) for statement in statements
                        ]
                except _STATEMENT_ERRORS as exc:
                    if isinstance(_classified(self.shard, exc), ShardUnavailable):
                        raise _classified(self.shard, exc) from exc
                    # Rolled back: run each on its own, so that only the failing ones fail.
                else:
                    self.on_commit(1)
                    return outcomes
            return await self._one_by_one(connection, statements)
        finally:
            await pool.release(connection)

    async def _one_by_one(
        self, connection: asyncpg.Connection, statements: Sequence[Statement]
    ) -> list[Rows | BaseException]:
        """Each statement in autocommit; once the shard stops answering, the rest fail unrun."""
        outcomes: list[Rows | BaseException] = []
        down: BaseException | None = None
        for statement in statements:
            if down is not None:
                outcomes.append(down)
                continue
            try:
                outcomes.append(await _rows(connection, statement))
            except _STATEMENT_ERRORS as exc:
                outcome = _classified(self.shard, exc)
                if isinstance(outcome, ShardUnavailable):
                    down = outcome
                outcomes.append(outcome)
            else:
                self.on_commit(1)
        return outcomes

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Queries]:
        pool = self._require()
        with _translated(self.shard):
            connection = await pool.acquire(timeout=self.connect_timeout)
        try:
            transaction = connection.transaction()
            with _translated(self.shard):
                await transaction.start()
            try:
                yield _Connection(self.shard, connection)
            except BaseException:
                with _translated(self.shard):
                    await transaction.rollback()
                raise
            with _translated(self.shard):
                await transaction.commit()
            self.on_commit(1)
        finally:
            await pool.release(connection)

    async def lock_schema(self, tx: Queries) -> None:
        # Instances starting together must not migrate one shard at once: a
        # transaction-scoped advisory lock makes the second wait, then skip.
        await tx.execute("SELECT pg_advisory_xact_lock($1)", _SCHEMA_LOCK)

    async def run_script(self, tx: Queries, script: str) -> None:
        await tx.execute(script)  # no arguments: asyncpg runs every statement in it
