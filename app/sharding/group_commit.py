"""Group commit: the statements callers send one connection, run in batches.

Callers `await group.run(statement)` one at a time each; the group gathers what
they send and hands it to a runner as one batch — the statements of one
event-loop turn, and those that arrive while a batch is under way, go
together in the next. Batches run one after another, statements in the order
they came. A shard's writer runs a batch as ONE transaction in ONE thread hop
(SQLite) or on one connection (PostgreSQL), so under load a transaction, a
commit (an fsync) and a hop are paid per batch, not per statement; the reader
uses the same queue without the transaction, one hop for a turn's reads.

Gathering (`gather` seconds; 0, the default, never waits). A commit costs the
same for one statement as for fifty (on SQLite an fsync: ~200 µs of CPU and
~0.6 ms on these hosts), so under concurrent load a batch begins `gather`
after its first statement, and the statements sent meanwhile join it. Only
under load: when the previous batch carried more than one statement and ended
less than `BUSY_FOR` ago. A lone writer (each batch one statement) or an idle
group runs at once, so a sequential client never waits; `close()` cuts a
gathering short.

The runner reports one outcome per statement — its rows, or the exception
that failed it — so a failure fails exactly the callers whose statements
failed; a runner that raises (the transaction could not begin or commit)
fails every caller of that batch, and none of its statements was committed.

Cancellation. A caller cancelled while its statement still waits is told
`CancelledError` and the statement is withdrawn: it never runs. A caller
cancelled once its batch is under way is told `CancelledError` only once the
batch has ended (at most `settle_timeout` later), so when the cancellation
reaches it the statement is settled — committed or not — and what the caller
does next (a job put back in the queue) cannot overtake it. The batch itself
is never cancelled for the others. As with any commit whose answer is lost,
the cancelled caller does not learn which: a write it must know about is
re-read or made idempotent.

Shutdown: `close()` stops taking statements (`Closed`), then waits until
every statement already taken has run — committed or failed, each caller
told which — and returns. Nothing taken is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("keel.sharding")

MAX_BATCH = 256  # statements in one batch at most (SQLite's transactions stay short)
# A group whose last batch ended this recently (and carried more than one statement)
# is under load: its next batch gathers (see the module docstring).
BUSY_FOR = 0.05  # seconds


@dataclass(frozen=True, slots=True)
class Statement:
    sql: str
    args: tuple[Any, ...]


Rows = list[dict[str, Any]]
# The runner: one outcome per statement, in order — its rows, or the exception that
# failed it. Raising fails the whole batch (nothing of it committed).
Runner = Callable[[Sequence[Statement]], Awaitable[list[Rows | BaseException]]]


class Closed(Exception):
    """The group is closing and takes no more statements."""


@dataclass(slots=True)
class _Pending:
    statement: Statement
    future: asyncio.Future[Rows]
    batch: asyncio.Future[None] | None = None  # set once its batch has begun: done when it ends


@dataclass
class GroupStats:
    batches: int = 0
    statements: int = 0
    largest: int = 0
    last_batch_seconds: float = 0.0
    withdrawn: int = 0  # statements whose caller was cancelled before they ran
    failed: list[str] = field(default_factory=list)  # the last few batch failures


class GroupCommit:
    def __init__(
        self,
        name: str,
        runner: Runner,
        *,
        max_batch: int = MAX_BATCH,
        settle_timeout: float = 30.0,
        gather: float = 0.0,
    ) -> None:
        self.name = name
        self._runner = runner
        self.max_batch = max_batch
        self.settle_timeout = settle_timeout
        self.gather = gather
        self._last_batch = (0, float("-inf"))  # (statements, when it ended: loop time)
        self._gathering: asyncio.Future[None] | None = None
        self._waiting: deque[_Pending] = deque()
        self._task: asyncio.Task[None] | None = None
        self._in_flight = 0
        self._closed = False
        self.stats = GroupStats()

    @property
    def pending(self) -> int:
        """Statements taken and not yet settled (waiting, or in the batch under way)."""
        return len(self._waiting) + self._in_flight

    async def run(self, sql: str, *args: Any) -> Rows:
        """Run one statement in the next batch; its rows, or what failed it."""
        if self._closed:
            raise Closed(f"{self.name} is closing")
        pending = _Pending(Statement(sql, args), asyncio.get_running_loop().create_future())
        self._waiting.append(pending)
        if self._task is None:
            # A task, not a call now: the rest of this turn's statements join the batch.
            self._task = asyncio.get_running_loop().create_task(
                self._drain(), name=f"keel.group-commit.{self.name}"
            )
        try:
            return await pending.future
        except asyncio.CancelledError:
            if pending.batch is None:
                self._withdraw(pending)
            else:
                await self._settled(pending.batch)
            if pending.future.done() and not pending.future.cancelled():
                pending.future.exception()  # seen: the caller is told it was cancelled instead
            raise

    def _withdraw(self, pending: _Pending) -> None:
        with contextlib.suppress(ValueError):
            self._waiting.remove(pending)
            self.stats.withdrawn += 1

    async def _settled(self, batch: asyncio.Future[None]) -> None:
        """Wait (bounded) for a batch under way to end, whatever else cancels us meanwhile."""
        deadline = time.monotonic() + self.settle_timeout
        while not batch.done() and (left := deadline - time.monotonic()) > 0:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait([batch], timeout=left)
        if not batch.done():
            log.warning("%s: a cancelled caller gave up waiting for its batch", self.name)

    async def _drain(self) -> None:
        try:
            while self._waiting:
                if self._under_load():
                    await self._gather()
                    if not self._waiting:  # every caller withdrew meanwhile
                        break
                batch: list[_Pending] = []
                ended: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                while self._waiting and len(batch) < self.max_batch:
                    pending = self._waiting.popleft()
                    pending.batch = ended
                    batch.append(pending)
                self._in_flight = len(batch)
                try:
                    await self._run_batch(batch)
                finally:
                    self._in_flight = 0
                    self._last_batch = (len(batch), asyncio.get_running_loop().time())
                    ended.set_result(None)
        except asyncio.CancelledError:
            # Only the loop's end cancels the drain: what still waits will not run.
            while self._waiting:
                self._waiting.popleft().future.cancel()
            raise
        finally:
            self._task = None

    def _under_load(self) -> bool:
        if not self.gather or self._closed or len(self._waiting) >= self.max_batch:
            return False
        size, ended = self._last_batch
        return size > 1 and asyncio.get_running_loop().time() - ended < BUSY_FOR

    async def _gather(self) -> None:
        """Wait `gather` seconds (less if the group closes meanwhile)."""
        loop = asyncio.get_running_loop()
        self._gathering = waiter = loop.create_future()
        timer = loop.call_later(self.gather, _wake, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._gathering = None

    async def _run_batch(self, batch: list[_Pending]) -> None:
        started = time.perf_counter()
        try:
            # Not shielded (a task and a future per batch): nothing cancels the drain
            # but the loop's own end, and then the batch's callers are told so below.
            outcomes = await self._runner([p.statement for p in batch])
        except asyncio.CancelledError:
            for pending in batch:
                pending.future.cancel()  # its outcome is unknown: never left waiting
            raise
        # The batch failed as a whole: so did each statement. Not swallowed: every
        # caller of the batch raises it.
        except Exception as exc:  # noqa: BLE001
            self.stats.failed = [*self.stats.failed[-4:], f"{type(exc).__name__}: {exc}"]
            outcomes = [exc] * len(batch)
        stats = self.stats
        stats.batches += 1
        stats.statements += len(batch)
        stats.largest = max(stats.largest, len(batch))
        stats.last_batch_seconds = time.perf_counter() - started
        if len(outcomes) != len(batch):  # a runner bug: never let a caller hang on it
            problem = RuntimeError(f"{self.name}: {len(outcomes)} outcomes for {len(batch)}")
            outcomes = [problem] * len(batch)
        for pending, outcome in zip(batch, outcomes, strict=True):
            if pending.future.done():
                continue
            if isinstance(outcome, BaseException):
                pending.future.set_exception(outcome)
            else:
                pending.future.set_result(outcome)

    async def close(self) -> None:
        """Take no more statements; return once every one taken has run (or failed)."""
        self._closed = True
        if self._gathering is not None:
            _wake(self._gathering)
        while (task := self._task) is not None:
            await asyncio.shield(task)


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
