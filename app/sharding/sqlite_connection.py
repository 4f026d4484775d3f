"""One sqlite3 connection on a thread of its own: `await connection.run(fn)` calls
`fn(sqlite3.Connection)` there.

sqlite3 blocks (a read, a commit's fsync), so it never runs on the event loop.
Every `run` is one hop to the thread and back; callers make each hop count —
a whole batch of statements, a whole transaction — instead of one hop per
statement (see `app.sharding.group_commit`). The connection is used by that
one thread only, in the order calls arrive.

Durability (`synchronous`), in WAL mode: `FULL` syncs the WAL at every commit,
so a commit that returned survives a power cut or an OS crash; `NORMAL` syncs
only at checkpoints, so it stays consistent but an OS crash (not a process
crash: the WAL is then in the OS's cache) may lose the last commits. The shard
and queue files hold job records and queued jobs, and a 202 promises that a job
survives, so they use FULL; group commit pays one sync per batch, not per job.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal, TypeVar

T = TypeVar("T")

Synchronous = Literal["FULL", "NORMAL"]
STATEMENT_CACHE = 256  # prepared statements kept per connection (sqlite3 reuses them)


class NotConnected(Exception):
    """The connection is not open (never opened, or closed)."""


class SQLiteConnection:
    def __init__(
        self, name: str, path: Path, *, busy_timeout: float, synchronous: Synchronous = "FULL"
    ) -> None:
        self.name = name
        self.path = path
        self.busy_timeout_ms = int(busy_timeout * 1000)
        self.synchronous = synchronous
        self._executor: ThreadPoolExecutor | None = None
        self._connection: sqlite3.Connection | None = None

    @property
    def is_open(self) -> bool:
        return self._connection is not None

    async def open(self) -> None:
        """Connect (on the thread); sqlite3's errors propagate."""
        executor = ThreadPoolExecutor(1, thread_name_prefix=f"keel-sqlite-{self.name}")
        try:
            self._connection = await asyncio.get_running_loop().run_in_executor(
                executor, self._connect
            )
        except BaseException:
            executor.shutdown(wait=False)
            raise
        self._executor = executor

    def _connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(
            self.path,
            isolation_level=None,  # autocommit: transactions are explicit (BEGIN IMMEDIATE)
            check_same_thread=False,  # made here, used only by this same thread
            cached_statements=STATEMENT_CACHE,
        )
        try:
            connection.execute(f"PRAGMA busy_timeout = {self.busy_timeout_ms}")
            connection.execute("PRAGMA journal_mode = WAL")
            connection.execute(f"PRAGMA synchronous = {self.synchronous}")
        except BaseException:
            connection.close()
            raise
        return connection

    async def run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """`work(connection)` on the connection's thread: one hop."""
        connection, executor = self._connection, self._executor
        if connection is None or executor is None:
            raise NotConnected(self.name)
        return await asyncio.get_running_loop().run_in_executor(executor, work, connection)

    async def close(self) -> None:
        connection, self._connection = self._connection, None
        executor, self._executor = self._executor, None
        if executor is None:
            return
        try:
            if connection is not None:
                # Queued behind any hop still under way: closes once it has ended.
                await asyncio.get_running_loop().run_in_executor(executor, connection.close)
        finally:
            executor.shutdown(wait=False)
