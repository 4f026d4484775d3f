"""A PostgreSQL shard through an asyncpg pool, with short timeouts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import asyncpg

from app.sharding.backend import Queries, Row, ShardBackend, ShardUnavailable

_SCHEMA_LOCK = 0x6B65656C  # "keel": the advisory lock id that serializes migrations

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

    async def open(self) -> None:
        with _translated(self.shard):
            self._pool = await asyncpg.create_pool(
                self.dsn,
                min_size=1,
                max_size=self.pool_size,
                timeout=self.connect_timeout,
                command_timeout=self.query_timeout,
            )

    async def close(self) -> None:
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
        # A pool statement runs in autocommit: one round trip, no BEGIN/COMMIT.
        rows = await _Connection(self.shard, self._require()).fetch(sql, *args)
        self.on_commit(1)
        return rows

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
