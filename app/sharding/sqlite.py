"""A SQLite shard through aiosqlite: WAL, a busy timeout, one writer.

Two connections: the writer, used under a lock by one transaction at a time
(SQLite has one writer anyway, and interleaving two coroutines' statements on
one connection would mix their transactions), and a reader that sees only
committed data, concurrently with the writer thanks to WAL.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import aiosqlite

from app.sharding.backend import Queries, Row, ShardBackend, ShardUnavailable

_NUMBERED = re.compile(r"\$(\d+)")
# What sqlite3 says when the database cannot answer now (as opposed to bad SQL).
_UNAVAILABLE = ("locked", "busy", "unable to open", "disk i/o", "readonly", "no such file")


def to_sqlite(sql: str) -> str:
    """`$1` -> `?1`: SQLite's own numbered parameters, so numbering keeps its meaning."""
    return _NUMBERED.sub(r"?\1", sql)


@contextmanager
def _translated(shard: str) -> Iterator[None]:
    """Turn sqlite3's "cannot answer now" errors into `ShardUnavailable`."""
    try:
        yield
    except sqlite3.OperationalError as exc:
        if any(word in str(exc).lower() for word in _UNAVAILABLE):
            raise ShardUnavailable(shard, str(exc)) from exc
        raise
    except ValueError as exc:  # aiosqlite: "no active connection" / closed
        if "connection" in str(exc).lower():
            raise ShardUnavailable(shard, "connection closed") from exc
        raise


class _Connection(Queries):
    def __init__(self, shard: str, connection: aiosqlite.Connection) -> None:
        self.shard = shard
        self.connection = connection

    # Each await on aiosqlite is a hop to its thread and back: one per statement
    # (no separate fetch or cursor close) keeps a query to a single hop.
    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        with _translated(self.shard):
            rows = await self.connection.execute_fetchall(to_sqlite(sql), args)
        return [dict(row) for row in rows]

    async def execute(self, sql: str, *args: Any) -> int:
        with _translated(self.shard):
            cursor = await self.connection.execute(to_sqlite(sql), args)
        return cursor.rowcount


class SQLiteBackend(ShardBackend):
    dialect = "sqlite"

    def __init__(self, shard: str, path: str, busy_timeout: float = 5.0) -> None:
        self.shard = shard
        self.path = Path(path)
        self.busy_timeout_ms = int(busy_timeout * 1000)
        self._writer: _Connection | None = None
        self._reader: _Connection | None = None
        self._write_lock = asyncio.Lock()

    async def _connect(self) -> _Connection:
        with _translated(self.shard):
            connection = await aiosqlite.connect(self.path, isolation_level=None)
            connection.row_factory = sqlite3.Row
            await connection.execute(f"PRAGMA busy_timeout = {self.busy_timeout_ms}")
            await connection.execute("PRAGMA journal_mode = WAL")
            await connection.execute("PRAGMA synchronous = NORMAL")
        return _Connection(self.shard, connection)

    async def open(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ShardUnavailable(self.shard, f"cannot create {self.path.parent}: {exc}") from exc
        self._writer = await self._connect()
        self._reader = await self._connect()

    async def close(self) -> None:
        for connection in (self._reader, self._writer):
            if connection is not None:
                await connection.connection.close()
        self._reader = self._writer = None

    def _require(self, connection: _Connection | None) -> _Connection:
        if connection is None:
            raise ShardUnavailable(self.shard, "not connected")
        return connection

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        return await self._require(self._reader).fetch(sql, *args)

    async def execute(self, sql: str, *args: Any) -> int:
        async with self.transaction() as tx:
            return await tx.execute(sql, *args)

    async def write(self, sql: str, *args: Any) -> list[Row]:
        writer = self._require(self._writer)
        # Autocommit: the statement is its own transaction, in one hop to the
        # thread. The lock keeps it out of another coroutine's open transaction.
        async with self._write_lock:
            rows = await writer.fetch(sql, *args)
        self.on_commit(1)
        return rows

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Queries]:
        writer = self._require(self._writer)
        async with self._write_lock:
            # IMMEDIATE takes the write lock now, so the transaction cannot fail
            # half-way with "database is locked" when it first writes.
            await writer.execute("BEGIN IMMEDIATE")
            try:
                yield writer
            except BaseException:
                await writer.execute("ROLLBACK")
                raise
            await writer.execute("COMMIT")
            self.on_commit(1)

    async def run_script(self, tx: Queries, script: str) -> None:
        # executescript() would COMMIT first and escape our transaction: run
        # statement by statement instead (migrations keep one statement per ';').
        for statement in split_statements(script):
            await tx.execute(statement)


def split_statements(script: str) -> list[str]:
    """Split a migration on ';' at line ends, dropping comment-only lines."""
    lines = [line for line in script.splitlines() if not line.strip().startswith("--")]
    statements = re.split(r";[ \t]*(?:--[^\n]*)?(?:\n|$)", "\n".join(lines))
    return [s.strip() for s in statements if s.strip()]
