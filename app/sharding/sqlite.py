"""A SQLite shard: WAL, a busy timeout, one writer, group commit.

Two connections, each on a thread of its own (`app.sharding.sqlite_connection`):
the writer and a reader that sees only committed data, concurrently with the
writer thanks to WAL. Single-statement writes (`write`) go through the
writer's group commit: those of one event-loop turn, and those sent while a
transaction commits (under load, also those of the next few milliseconds:
`WRITE_GATHER`), run as the next transaction — one thread hop and one WAL
sync for the batch; a failing statement is undone on its own and fails
only its own caller. Reads of one turn share one hop to the
reader the same way. A multi-statement `transaction()` holds the writer
alone (a lock, which batches take too) and costs one hop per statement.
"""

from __future__ import annotations

import asyncio
import functools
import re
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from app.sharding.backend import Queries, Row, ShardBackend, ShardUnavailable
from app.sharding.group_commit import Closed, GroupCommit, Statement
from app.sharding.sqlite_connection import NotConnected, SQLiteConnection, Synchronous

T = TypeVar("T")

_NUMBERED = re.compile(r"\$(\d+)")
# What sqlite3 says when the database cannot answer now (as opposed to bad SQL).
_UNAVAILABLE = ("locked", "busy", "unable to open", "disk i/o", "readonly", "no such file")
# What one statement's bad input raises (sqlite3's own errors, or its argument checks).
_STATEMENT_ERRORS = (sqlite3.Error, ValueError, OverflowError, TypeError)
_Outcome = list[Row] | BaseException
# Under concurrent load a write batch waits this long for more writes to join it
# (`GroupCommit.gather`): a commit's fsync costs ~200 µs of CPU whatever it carries,
# and batches of one turn were ~4 statements. 3 ms halved the commits per job in
# bench/jobs.py (bench/README § "A seventh session"); reads do not wait.
WRITE_GATHER = 0.003  # seconds


@functools.lru_cache(maxsize=512)
def to_sqlite(sql: str) -> str:
    """`$1` -> `?1`: SQLite's own numbered parameters, so numbering keeps its meaning."""
    return _NUMBERED.sub(r"?\1", sql)


def _translated(shard: str, exc: BaseException) -> BaseException:
    """sqlite3's "cannot answer now" errors as `ShardUnavailable`; others unchanged."""
    if isinstance(exc, sqlite3.OperationalError) and any(
        word in str(exc).lower() for word in _UNAVAILABLE
    ):
        unavailable = ShardUnavailable(shard, str(exc))
        unavailable.__cause__ = exc
        return unavailable
    if isinstance(exc, NotConnected | Closed):
        return ShardUnavailable(shard, "not connected")
    return exc


def _rows(cursor: sqlite3.Cursor) -> list[Row]:
    description = cursor.description
    if description is None:  # no result columns (no RETURNING)
        cursor.fetchall()
        return []
    names = [column[0] for column in description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _fetch(sql: str, args: Sequence[Any]) -> Callable[[sqlite3.Connection], list[Row]]:
    return lambda connection: _rows(connection.execute(to_sqlite(sql), args))


def _write_batch(shard: str, statements: Sequence[Statement]) -> Callable[..., list[_Outcome]]:
    """One transaction for the batch (run on the writer's thread).

    A statement that fails (a constraint, bad SQL) is undone by SQLite on its
    own — the transaction stays active and the others go on. Errors that may
    roll the whole transaction back (a full disk, an I/O error) leave no
    transaction behind: then nothing of the batch is committed, and it fails as
    a whole. No savepoints: each statement sent costs the thread the GIL again,
    which a busy event loop holds.
    """

    def run(connection: sqlite3.Connection) -> list[_Outcome]:
        if len(statements) == 1:  # alone: autocommit, which fails only it anyway
            statement = statements[0]
            try:
                return [_rows(connection.execute(to_sqlite(statement.sql), statement.args))]
            except _STATEMENT_ERRORS as exc:
                return [_translated(shard, exc)]
        outcomes: list[_Outcome] = []
        # IMMEDIATE takes the write lock now, so the batch cannot fail half-way with
        # "database is locked" when it first writes (another process holds the file).
        connection.execute("BEGIN IMMEDIATE")
        try:
            for statement in statements:
                try:
                    rows = _rows(connection.execute(to_sqlite(statement.sql), statement.args))
                except _STATEMENT_ERRORS as exc:
                    if not connection.in_transaction:
                        raise  # the whole transaction went with it
                    outcomes.append(_translated(shard, exc))
                else:
                    outcomes.append(rows)
            connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise
        return outcomes

    return run


def _read_batch(shard: str, statements: Sequence[Statement]) -> Callable[..., list[_Outcome]]:
    """Each read on its own (run on the reader's thread): one hop for the lot."""

    def run(connection: sqlite3.Connection) -> list[_Outcome]:
        outcomes: list[_Outcome] = []
        for statement in statements:
            try:
                outcomes.append(_rows(connection.execute(to_sqlite(statement.sql), statement.args)))
            except _STATEMENT_ERRORS as exc:
                outcomes.append(_translated(shard, exc))
        return outcomes

    return run


class _Transaction(Queries):
    """Statements in a transaction that holds the writer: one hop each."""

    def __init__(self, backend: SQLiteBackend, connection: SQLiteConnection) -> None:
        self._backend = backend
        self._connection = connection

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        return await self._backend._hop(self._connection, _fetch(sql, args))

    async def execute(self, sql: str, *args: Any) -> int:
        return await self._backend._hop(
            self._connection, lambda c: c.execute(to_sqlite(sql), args).rowcount
        )


class SQLiteBackend(ShardBackend):
    dialect = "sqlite"

    writes: GroupCommit

    def __init__(
        self,
        shard: str,
        path: str,
        busy_timeout: float = 5.0,
        *,
        synchronous: Synchronous = "FULL",
    ) -> None:
        self.shard = shard
        self.path = Path(path)
        self.busy_timeout = busy_timeout
        self.synchronous: Synchronous = synchronous
        self._writer: SQLiteConnection | None = None
        self._reader: SQLiteConnection | None = None
        self._write_lock = asyncio.Lock()
        self._new_groups()

    def _new_groups(self) -> None:
        """Fresh write and read groups (a reopened shard takes statements again)."""
        # A cancelled caller waits at most this for its batch: the busy timeout bounds
        # how long a batch waits for the file, and a statement runs well within it.
        settle = 2 * self.busy_timeout
        name = self.shard
        self.writes = GroupCommit(
            f"{name} writes", self._run_writes, settle_timeout=settle, gather=WRITE_GATHER
        )
        self.reads = GroupCommit(f"{name} reads", self._run_reads, settle_timeout=settle)

    async def _connect(self, role: str) -> SQLiteConnection:
        connection = SQLiteConnection(
            f"{self.shard}-{role}",
            self.path,
            busy_timeout=self.busy_timeout,
            synchronous=self.synchronous,
        )
        try:
            await connection.open()
        except _STATEMENT_ERRORS as exc:
            raise _translated(self.shard, exc) from exc
        return connection

    async def open(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ShardUnavailable(self.shard, f"cannot create {self.path.parent}: {exc}") from exc
        self._new_groups()
        self._writer = await self._connect("writer")
        self._reader = await self._connect("reader")

    async def close(self) -> None:
        # Statements already taken are run (committed or failed) before the files close.
        await self.writes.close()
        await self.reads.close()
        for connection in (self._reader, self._writer):
            if connection is not None:
                await connection.close()
        self._reader = self._writer = None

    async def _hop(self, connection: SQLiteConnection | None, work: Callable[..., T]) -> T:
        if connection is None:
            raise ShardUnavailable(self.shard, "not connected")
        try:
            return await connection.run(work)
        except (*_STATEMENT_ERRORS, NotConnected) as exc:
            raise _translated(self.shard, exc) from exc

    async def _run_writes(self, statements: Sequence[Statement]) -> list[_Outcome]:
        async with self._write_lock:
            outcomes = await self._hop(self._writer, _write_batch(self.shard, statements))
        if not all(isinstance(outcome, BaseException) for outcome in outcomes):
            self.on_commit(1)
        return outcomes

    async def _run_reads(self, statements: Sequence[Statement]) -> list[_Outcome]:
        return await self._hop(self._reader, _read_batch(self.shard, statements))

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        try:
            return await self.reads.run(sql, *args)
        except Closed as exc:
            raise ShardUnavailable(self.shard, "closing") from exc

    async def execute(self, sql: str, *args: Any) -> int:
        async with self.transaction() as tx:
            return await tx.execute(sql, *args)

    async def write(self, sql: str, *args: Any) -> list[Row]:
        try:
            return await self.writes.run(sql, *args)
        except Closed as exc:
            raise ShardUnavailable(self.shard, "closing") from exc

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Queries]:
        writer = self._writer
        if writer is None:
            raise ShardUnavailable(self.shard, "not connected")
        async with self._write_lock:
            # IMMEDIATE takes the write lock now, so the transaction cannot fail
            # half-way with "database is locked" when it first writes.
            await self._hop(writer, lambda c: c.execute("BEGIN IMMEDIATE"))
            try:
                yield _Transaction(self, writer)
            except BaseException:
                await self._hop(writer, _rollback)
                raise
            await self._hop(writer, lambda c: c.execute("COMMIT"))
            self.on_commit(1)

    async def run_script(self, tx: Queries, script: str) -> None:
        # executescript() would COMMIT first and escape our transaction: run
        # statement by statement instead (migrations keep one statement per ';').
        for statement in split_statements(script):
            await tx.execute(statement)


def _rollback(connection: sqlite3.Connection) -> None:
    if connection.in_transaction:
        connection.execute("ROLLBACK")


def split_statements(script: str) -> list[str]:
    """Split a migration on ';' at line ends, dropping comment-only lines."""
    lines = [line for line in script.splitlines() if not line.strip().startswith("--")]
    statements = re.split(r";[ \t]*(?:--[^\n]*)?(?:\n|$)", "\n".join(lines))
    return [s.strip() for s in statements if s.strip()]
