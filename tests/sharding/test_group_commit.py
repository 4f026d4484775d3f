"""Group commit (`app.sharding.group_commit`) on the real SQLite backend: batches, partial
failure, cancellation, shutdown with writes pending, and the durability it is there for.

Where a test must hold a batch open at a known moment, the backend's own runner is
wrapped by a gate the test opens: the statements still run on the real database.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from app.sharding import group_commit
from app.sharding.backend import ShardBackend, ShardUnavailable
from app.sharding.group_commit import Closed, GroupCommit, Rows, Statement
from app.sharding.sqlite import WRITE_GATHER, SQLiteBackend

CREATE = "CREATE TABLE t (id TEXT PRIMARY KEY, n INTEGER NOT NULL)"
INSERT = "INSERT INTO t (id, n) VALUES ($1, $2) RETURNING id, n"


@pytest.fixture
async def shard(tmp_path: Path) -> AsyncIterator[SQLiteBackend]:
    backend = SQLiteBackend("shard.0", str(tmp_path / "shard0.db"), busy_timeout=0.2)
    await backend.open()
    async with backend.transaction() as tx:
        await tx.execute(CREATE)
    try:
        yield backend
    finally:
        await backend.close()


class Gate:
    """Wraps the backend's write runner: records each batch, and holds it while closed."""

    def __init__(self, backend: SQLiteBackend) -> None:
        self.runner = backend._run_writes
        self.open = asyncio.Event()
        self.open.set()
        self.entered = asyncio.Event()
        self.batches: list[list[str]] = []
        backend.writes._runner = self.run

    async def run(self, statements: Sequence[Statement]):
        self.batches.append([str(s.args[0]) for s in statements])
        self.entered.set()
        await self.open.wait()
        return await self.runner(statements)

    async def hold(self, shard: SQLiteBackend, row_id: str) -> asyncio.Task:
        """Start a write of `row_id` and hold its batch open (until `open` is set)."""
        self.open.clear()
        write = asyncio.create_task(shard.write(INSERT, row_id, 0))
        await self.entered.wait()
        return write


async def ids(shard: SQLiteBackend) -> set[str]:
    return {row["id"] for row in await shard.fetch("SELECT id FROM t")}


async def test_the_writes_of_one_turn_are_one_transaction_each_caller_gets_its_rows(
    shard: SQLiteBackend,
) -> None:
    gate = Gate(shard)
    commits: list[int] = []
    shard.on_commit = commits.append
    results = await asyncio.gather(*(shard.write(INSERT, f"a{n}", n) for n in range(20)))
    assert results == [[{"id": f"a{n}", "n": n}] for n in range(20)]
    assert gate.batches == [[f"a{n}" for n in range(20)]]
    assert commits == [1]


async def test_writes_sent_while_a_batch_commits_go_together_in_the_next(
    shard: SQLiteBackend,
) -> None:
    gate = Gate(shard)
    first = await gate.hold(shard, "first")
    later = [asyncio.create_task(shard.write(INSERT, f"b{n}", n)) for n in range(5)]
    await asyncio.sleep(0.01)
    gate.open.set()
    await asyncio.gather(first, *later)
    assert gate.batches == [["first"], [f"b{n}" for n in range(5)]]


async def test_a_failing_statement_fails_only_its_caller(shard: SQLiteBackend) -> None:
    await shard.write(INSERT, "taken", 0)
    gate = Gate(shard)
    outcomes = await asyncio.gather(
        shard.write(INSERT, "c1", 1),
        shard.write(INSERT, "taken", 2),  # primary key: an IntegrityError
        shard.write("INSERT INTO nowhere VALUES ($1)", "c-bad"),  # bad SQL
        shard.write(INSERT, "c3", 3),
        return_exceptions=True,
    )
    assert len(gate.batches) == 1
    assert outcomes[0] == [{"id": "c1", "n": 1}]
    assert isinstance(outcomes[1], sqlite3.IntegrityError)
    assert isinstance(outcomes[2], sqlite3.OperationalError)
    assert outcomes[3] == [{"id": "c3", "n": 3}]
    # The failed ones left nothing behind; the others are committed.
    assert await ids(shard) == {"taken", "c1", "c3"}
    assert (await shard.fetch("SELECT n FROM t WHERE id = 'taken'")) == [{"n": 0}]


async def test_a_batch_that_cannot_commit_fails_every_caller_and_commits_nothing(
    shard: SQLiteBackend, tmp_path: Path
) -> None:
    other = sqlite3.connect(tmp_path / "shard0.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        outcomes = await asyncio.gather(
            *(shard.write(INSERT, f"d{n}", n) for n in range(3)), return_exceptions=True
        )
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert all(isinstance(outcome, ShardUnavailable) for outcome in outcomes), outcomes
    assert await ids(shard) == set()
    # The writer is fine afterwards.
    assert await shard.write(INSERT, "after", 0) == [{"id": "after", "n": 0}]


async def test_a_caller_cancelled_before_its_batch_began_is_withdrawn(
    shard: SQLiteBackend,
) -> None:
    gate = Gate(shard)
    first = await gate.hold(shard, "e0")
    doomed = asyncio.create_task(shard.write(INSERT, "e-cancelled", 1))
    kept = asyncio.create_task(shard.write(INSERT, "e2", 2))
    await asyncio.sleep(0.01)  # both wait for the next batch
    doomed.cancel()
    with pytest.raises(asyncio.CancelledError):
        await doomed
    gate.open.set()
    await asyncio.gather(first, kept)
    assert gate.batches == [["e0"], ["e2"]]
    assert await ids(shard) == {"e0", "e2"}
    assert shard.writes.stats.withdrawn == 1


async def test_a_caller_cancelled_mid_batch_hears_of_it_once_the_batch_has_ended(
    shard: SQLiteBackend,
) -> None:
    gate = Gate(shard)
    gate.open.clear()
    doomed = asyncio.create_task(shard.write(INSERT, "f0", 0))
    other = asyncio.create_task(shard.write(INSERT, "f1", 1))
    await gate.entered.wait()
    doomed.cancel()
    await asyncio.sleep(0.05)
    # The batch is under way: the cancelled caller waits for it rather than leave
    # its write half-known, and the batch goes on for the other caller.
    assert not doomed.done()
    gate.open.set()
    with pytest.raises(asyncio.CancelledError):
        await doomed
    assert shard.writes.pending == 0  # settled when the cancellation arrived
    assert await other == [{"id": "f1", "n": 1}]
    assert await ids(shard) == {"f0", "f1"}  # committed with its batch


async def test_close_with_writes_pending_runs_every_one_and_then_refuses(
    shard: SQLiteBackend,
) -> None:
    gate = Gate(shard)
    in_flight = await gate.hold(shard, "g0")
    waiting = [asyncio.create_task(shard.write(INSERT, f"g{n}", n)) for n in range(1, 4)]
    failing = asyncio.create_task(shard.write(INSERT, "g0", 9))  # duplicate id: fails
    await asyncio.sleep(0.01)
    closing = asyncio.create_task(shard.writes.close())
    await asyncio.sleep(0.01)
    with pytest.raises(Closed):
        await shard.writes.run(INSERT, "too-late", 0)
    with pytest.raises(ShardUnavailable):
        await shard.write(INSERT, "too-late", 0)
    gate.open.set()
    await closing
    # Every write taken before the close has its answer: committed, or why not.
    assert await in_flight == [{"id": "g0", "n": 0}]
    assert [await task for task in waiting] == [[{"id": f"g{n}", "n": n}] for n in range(1, 4)]
    with pytest.raises(sqlite3.IntegrityError):
        await failing
    assert await ids(shard) == {"g0", "g1", "g2", "g3"}


async def test_closing_the_backend_commits_what_was_sent_before(tmp_path: Path) -> None:
    path = tmp_path / "shard1.db"
    backend = SQLiteBackend("shard.1", str(path))
    await backend.open()
    async with backend.transaction() as tx:
        await tx.execute(CREATE)
    writes = [asyncio.create_task(backend.write(INSERT, f"h{n}", n)) for n in range(50)]
    await asyncio.sleep(0)  # taken, not yet run
    await backend.close()
    assert all(task.done() and not task.exception() for task in writes)
    with sqlite3.connect(path) as check:
        assert check.execute("SELECT count(*) FROM t").fetchone() == (50,)


async def test_the_reads_of_one_turn_share_one_hop(shard: SQLiteBackend) -> None:
    await asyncio.gather(*(shard.write(INSERT, f"r{n}", n) for n in range(5)))
    hops: list[int] = []
    runner = shard._run_reads

    async def counted(statements):
        hops.append(len(statements))
        return await runner(statements)

    shard.reads._runner = counted
    rows = await asyncio.gather(
        *(shard.fetch("SELECT n FROM t WHERE id = $1", f"r{n}") for n in range(5)),
        shard.fetch("SELECT nonsense FROM t"),
        return_exceptions=True,
    )
    assert rows[:5] == [[{"n": n}] for n in range(5)]
    assert isinstance(rows[5], sqlite3.OperationalError)  # fails only itself
    assert hops == [6]


async def test_shard_files_sync_every_commit(shard: SQLiteBackend) -> None:
    """WAL with synchronous=FULL: a commit that returned survives an OS crash (a 202'd job)."""
    for connection in (shard._writer, shard._reader):
        assert connection is not None
        mode = await connection.run(lambda c: c.execute("PRAGMA synchronous").fetchone()[0])
        journal = await connection.run(lambda c: c.execute("PRAGMA journal_mode").fetchone()[0])
        assert (mode, journal) == (2, "wal")  # 2 = FULL


async def test_a_runner_that_breaks_its_promise_fails_the_batch_not_the_callers_forever() -> None:
    async def short(statements: Sequence[Statement]):
        return []  # one outcome missing for each statement

    group = GroupCommit("broken", short)
    with pytest.raises(RuntimeError, match="0 outcomes for 1"):
        await group.run("SELECT 1")


async def test_a_drain_cancelled_with_the_loop_leaves_no_caller_waiting() -> None:
    started = asyncio.Event()

    async def stuck(statements: Sequence[Statement]):
        started.set()
        await asyncio.Event().wait()
        return []

    group = GroupCommit("stuck", stuck)
    caller = asyncio.create_task(group.run("SELECT 1"))
    await started.wait()
    assert group._task is not None
    group._task.cancel()  # what the loop's end does to every task left
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(caller, timeout=5)


# -- gathering: under load, a batch waits a moment for more ------------------------------


class Recorder:
    """A runner that records each batch's statements (their first argument) and answers."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []

    async def __call__(self, statements: Sequence[Statement]) -> list[Rows | BaseException]:
        self.batches.append([str(s.args[0]) for s in statements])
        await asyncio.sleep(0)
        return [[{"id": str(s.args[0])}] for s in statements]


async def loaded(group: GroupCommit) -> None:
    """Two statements at once: the group's last batch carried more than one."""
    await asyncio.gather(group.run("INSERT", "load-1"), group.run("INSERT", "load-2"))


async def test_under_load_a_batch_gathers_what_is_sent_in_the_next_moments() -> None:
    recorder = Recorder()
    group = GroupCommit("gathering", recorder, gather=30.0)
    await loaded(group)
    first = asyncio.create_task(group.run("INSERT", "a"))
    await asyncio.sleep(0.01)  # a's batch would have run by now without gathering
    assert recorder.batches == [["load-1", "load-2"]]
    second = asyncio.create_task(group.run("INSERT", "b"))
    await asyncio.sleep(0)
    await group.close()  # cuts the gathering short: no 30 s wait
    assert await first == [{"id": "a"}]
    assert await second == [{"id": "b"}]
    assert recorder.batches == [["load-1", "load-2"], ["a", "b"]]


async def test_a_lone_writer_and_an_idle_group_never_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    recorder = Recorder()
    group = GroupCommit("lone", recorder, gather=30.0)
    async with asyncio.timeout(5):
        for n in range(3):  # one statement a batch: never under load
            await group.run("INSERT", f"seq{n}")
        monkeypatch.setattr(group_commit, "BUSY_FOR", 0.01)
        await loaded(group)
        await asyncio.sleep(0.02)  # idle since
        await group.run("INSERT", "after-a-pause")
    assert recorder.batches[-1] == ["after-a-pause"]
    assert all(len(batch) == 1 for batch in recorder.batches[:3])


async def test_a_caller_cancelled_while_its_batch_gathers_is_withdrawn() -> None:
    recorder = Recorder()
    group = GroupCommit("withdrawn", recorder, gather=30.0)
    await loaded(group)
    doomed = asyncio.create_task(group.run("INSERT", "doomed"))
    kept = asyncio.create_task(group.run("INSERT", "kept"))
    await asyncio.sleep(0.01)
    doomed.cancel()
    with pytest.raises(asyncio.CancelledError):
        await doomed
    await group.close()
    assert await kept == [{"id": "kept"}]
    assert recorder.batches[-1] == ["kept"]  # the cancelled one never ran
    assert group.stats.withdrawn == 1


async def test_a_gathering_whose_every_caller_withdrew_runs_no_empty_batch() -> None:
    recorder = Recorder()
    group = GroupCommit("deserted", recorder, gather=0.05)
    await loaded(group)
    doomed = asyncio.create_task(group.run("INSERT", "doomed"))
    await asyncio.sleep(0.01)
    doomed.cancel()
    with pytest.raises(asyncio.CancelledError):
        await doomed
    drain = group._task
    assert drain is not None
    await asyncio.wait_for(drain, timeout=5)  # the gathering ends; nothing is left to run
    assert recorder.batches == [["load-1", "load-2"]]


async def test_a_drain_cancelled_while_gathering_leaves_no_caller_waiting() -> None:
    group = GroupCommit("ended", Recorder(), gather=30.0)
    await loaded(group)
    caller = asyncio.create_task(group.run("INSERT", "never"))
    await asyncio.sleep(0.01)
    assert group._task is not None
    group._task.cancel()  # what the loop's end does to every task left
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(caller, timeout=5)


async def test_a_shards_writes_of_the_next_moments_under_load_are_one_transaction(
    shard: SQLiteBackend,
) -> None:
    assert shard.writes.gather == WRITE_GATHER > 0
    gate = Gate(shard)
    await asyncio.gather(shard.write(INSERT, "l0", 0), shard.write(INSERT, "l1", 1))
    writes = []
    for n in range(4):  # each in a turn of its own
        writes.append(asyncio.create_task(shard.write(INSERT, f"m{n}", n)))
        await asyncio.sleep(0)
    assert [await write for write in writes] == [[{"id": f"m{n}", "n": n}] for n in range(4)]
    # Without gathering, m0 would have gone alone as soon as it was sent.
    assert gate.batches == [["l0", "l1"], ["m0", "m1", "m2", "m3"]]
    assert await ids(shard) == {"l0", "l1", "m0", "m1", "m2", "m3"}


# -- both dialects: the same promises on PostgreSQL ------------------------------------------


@pytest.fixture
async def either(backend: ShardBackend) -> ShardBackend:
    """An opened backend of each dialect (tests/sharding/conftest.py) with the table."""
    async with backend.transaction() as tx:
        await tx.execute(CREATE)
    return backend


async def test_on_either_dialect_one_transaction_per_batch_and_failures_stay_their_own(
    either: ShardBackend,
) -> None:
    commits: list[int] = []
    either.on_commit = commits.append
    await either.write(INSERT, "taken", 0)
    commits.clear()
    outcomes = await asyncio.gather(
        *(either.write(INSERT, f"p{n}", n) for n in range(5)),
        either.write(INSERT, "taken", 9),
        either.write(INSERT, "p5", 5),
        return_exceptions=True,
    )
    assert outcomes[:5] == [[{"id": f"p{n}", "n": n}] for n in range(5)]
    assert isinstance(outcomes[5], Exception)
    assert not isinstance(outcomes[5], ShardUnavailable)  # a constraint: the shard answered
    assert outcomes[6] == [{"id": "p5", "n": 5}]
    rows = await either.fetch("SELECT id, n FROM t ORDER BY id")
    assert rows == [
        {"id": "p0", "n": 0},
        *[{"id": f"p{n}", "n": n} for n in range(1, 6)],
        {"id": "taken", "n": 0},
    ]
    if either.dialect == "sqlite":
        assert commits == [1]  # savepoints: the batch commits once
    else:
        assert sum(commits) == 6  # rolled back, then each on its own


async def test_on_either_dialect_close_runs_the_writes_already_taken(
    either: ShardBackend,
) -> None:
    writes = [asyncio.create_task(either.write(INSERT, f"q{n}", n)) for n in range(40)]
    await asyncio.sleep(0)
    group = either.writes
    assert group is not None
    await group.close()
    assert [await task for task in writes] == [[{"id": f"q{n}", "n": n}] for n in range(40)]
    with pytest.raises(ShardUnavailable):
        await either.write(INSERT, "after-close", 0)
