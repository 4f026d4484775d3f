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
import contextlib
import queue
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, TypeVar

T = TypeVar("T")

Synchronous = Literal["FULL", "NORMAL"]
STATEMENT_CACHE = 256  # prepared statements kept per connection (sqlite3 reuses them)


class NotConnected(Exception):
    """The connection is not open (never opened, or closed)."""


_Work = tuple[Callable[[sqlite3.Connection], Any], asyncio.Future[Any], asyncio.AbstractEventLoop]


class SQLiteConnection:
    def __init__(
        self, name: str, path: Path, *, busy_timeout: float, synchronous: Synchronous = "FULL"
    ) -> None:
        self.name = name
        self.path = path
        self.busy_timeout_ms = int(busy_timeout * 1000)
        self.synchronous = synchronous
        # A thread of its own and a plain queue: half the cost of a hop through a
        # ThreadPoolExecutor (no work item, pool semaphore or chained futures).
        self._inbox: queue.SimpleQueue[_Work | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._connection: sqlite3.Connection | None = None

    @property
    def is_open(self) -> bool:
        return self._connection is not None

    async def open(self) -> None:
        """Connect (on the thread); sqlite3's errors propagate."""
        self._thread = threading.Thread(
            target=self._serve, name=f"keel-sqlite-{self.name}", daemon=True
        )
        self._thread.start()
        try:
            self._connection = await self._call(lambda _: self._connect())
        except BaseException:
            self._inbox.put(None)
            self._thread = None
            raise

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

    def _serve(self) -> None:
        """The thread: run each piece of work in turn; None ends it."""
        while (item := self._inbox.get()) is not None:
            work, future, loop = item
            error: BaseException | None = None
            result = None
            try:
                result = work(self._connection)  # type: ignore[arg-type]  # None only to connect
            except BaseException as exc:  # noqa: BLE001  # handed to the caller, who raises it
                error = exc
            with contextlib.suppress(RuntimeError):  # the loop has closed: nobody waits
                loop.call_soon_threadsafe(_settle, future, result, error)

    def _call(self, work: Callable[[sqlite3.Connection], T]) -> asyncio.Future[T]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._inbox.put((work, future, loop))
        return future

    async def run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """`work(connection)` on the connection's thread: one hop."""
        if self._connection is None or self._thread is None:
            raise NotConnected(self.name)
        return await self._call(work)

    async def close(self) -> None:
        connection, self._connection = self._connection, None
        thread, self._thread = self._thread, None
        if thread is None:
            return
        try:
            if connection is not None:
                # Queued behind any hop still under way: closes once it has ended.
                await self._call(lambda _: connection.close())
        finally:
            self._inbox.put(None)


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.cancelled():
        return  # its caller gave up (the work ran all the same)
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
