"""One contract, two backends: every test here runs on SQLite and on PostgreSQL.

What a caller of `ShardBackend` may rely on whatever the dialect: `$n`
parameters, rows as dicts, affected-row counts, transactions that commit or
roll back as a whole, reads that see committed writes at once, no lost update
under concurrency, and `ShardUnavailable` (never a driver error) when the shard
cannot answer — while a bug in SQL stays a bug.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import asyncpg
import pytest

from app.sharding.backend import ShardBackend, ShardUnavailable
from app.sharding.postgres import PostgresBackend
from app.sharding.sqlite import SQLiteBackend, split_statements, to_sqlite
from tests.support.services import free_port

# What a bad statement raises: the driver's own error, whichever dialect.
SQL_ERRORS = (sqlite3.Error, asyncpg.PostgresError, asyncpg.InterfaceError)

PAIRS = "CREATE TABLE pairs (id INTEGER PRIMARY KEY, a TEXT NOT NULL, b TEXT NOT NULL)"


async def count(backend: ShardBackend, table: str) -> int:
    return int(await backend.fetchval(f"SELECT count(*) AS n FROM {table}"))


# -- parameters and results -------------------------------------------------------------------


async def test_numbered_parameters_bind_by_number_and_may_repeat(backend: ShardBackend) -> None:
    await backend.execute(PAIRS)
    # $2 before $1, and $2 twice: numbering, not position, decides.
    await backend.execute("INSERT INTO pairs (id, a, b) VALUES ($2, $1, $1)", "same", 7)
    rows = await backend.fetch("SELECT id, a, b FROM pairs WHERE id = $1 AND a = $2", 7, "same")
    assert rows == [{"id": 7, "a": "same", "b": "same"}]


async def test_fetch_returns_plain_dicts_keyed_by_column(backend: ShardBackend) -> None:
    await backend.execute(PAIRS)
    await backend.execute("INSERT INTO pairs (id, a, b) VALUES (1, 'x', 'y'), (2, 'z', 'w')")
    rows = await backend.fetch("SELECT id, a AS first, b FROM pairs ORDER BY id")
    assert rows == [{"id": 1, "first": "x", "b": "y"}, {"id": 2, "first": "z", "b": "w"}]
    assert all(type(row) is dict for row in rows)
    assert await backend.fetch("SELECT id FROM pairs WHERE id = $1", 99) == []
    assert await backend.fetchrow("SELECT a FROM pairs WHERE id = $1", 2) == {"a": "z"}
    assert await backend.fetchrow("SELECT a FROM pairs WHERE id = $1", 99) is None
    assert await backend.fetchval("SELECT b FROM pairs WHERE id = $1", 1) == "y"


async def test_execute_returns_the_number_of_rows_changed(backend: ShardBackend) -> None:
    await backend.execute(PAIRS)
    inserted = await backend.execute(
        "INSERT INTO pairs (id, a, b) VALUES (1, 'x', 'x'), (2, 'x', 'y'), (3, 'y', 'y')"
    )
    assert inserted == 3
    assert await backend.execute("UPDATE pairs SET b = $1 WHERE a = $2", "new", "x") == 2
    assert await backend.execute("UPDATE pairs SET b = 'n' WHERE id = $1", 42) == 0
    assert await backend.execute("DELETE FROM pairs WHERE id > $1", 1) == 2
    async with backend.transaction() as tx:
        assert await tx.execute("INSERT INTO pairs (id, a, b) VALUES (5, 'p', 'q')") == 1
        assert await tx.execute("UPDATE pairs SET a = 'r'") == 2
        assert await tx.execute("DELETE FROM pairs") == 2


async def test_a_wrong_number_of_arguments_is_a_bug_not_an_outage(backend: ShardBackend) -> None:
    """A programming error must not read as "shard down" (the guard would then fail-fast
    every request for this shard's keys for `retry_after` seconds)."""
    await backend.execute(PAIRS)
    with pytest.raises(SQL_ERRORS):
        await backend.fetch("SELECT a FROM pairs WHERE id = $1")


async def test_bad_sql_and_constraint_violations_propagate_unchanged(
    backend: ShardBackend,
) -> None:
    await backend.execute(PAIRS)
    with pytest.raises(SQL_ERRORS):
        await backend.fetch("SELECT * FROM no_such_table")
    await backend.execute("INSERT INTO pairs (id, a, b) VALUES (1, 'x', 'y')")
    with pytest.raises(SQL_ERRORS):
        await backend.execute("INSERT INTO pairs (id, a, b) VALUES (1, 'dup', 'dup')")
    # The failed statement did not wedge the backend.
    assert await count(backend, "pairs") == 1


# -- transactions ----------------------------------------------------------------------------


async def test_a_transaction_commits_on_normal_exit(backend: ShardBackend) -> None:
    await backend.execute(PAIRS)
    async with backend.transaction() as tx:
        await tx.execute("INSERT INTO pairs (id, a, b) VALUES (1, 'x', 'y')")
        await tx.execute("INSERT INTO pairs (id, a, b) VALUES (2, 'x', 'y')")
        assert await tx.fetchval("SELECT count(*) AS n FROM pairs") == 2  # its own writes
    assert await count(backend, "pairs") == 2


async def test_a_transaction_rolls_back_when_the_block_raises(backend: ShardBackend) -> None:
    await backend.execute(PAIRS)
    await backend.execute("INSERT INTO pairs (id, a, b) VALUES (1, 'before', 'before')")

    async def write_then_change_mind() -> None:
        async with backend.transaction() as tx:
            await tx.execute("INSERT INTO pairs (id, a, b) VALUES (2, 'x', 'y')")
            await tx.execute("UPDATE pairs SET a = 'during' WHERE id = 1")
            raise RuntimeError("changed my mind")

    with pytest.raises(RuntimeError, match="changed my mind"):
        await write_then_change_mind()
    assert await backend.fetch("SELECT id, a FROM pairs") == [{"id": 1, "a": "before"}]
    # And the backend is usable afterwards (the rollback really ended the transaction).
    async with backend.transaction() as tx:
        await tx.execute("INSERT INTO pairs (id, a, b) VALUES (3, 'x', 'y')")
    assert await count(backend, "pairs") == 2


async def test_a_transaction_rolls_back_when_its_sql_fails(backend: ShardBackend) -> None:
    await backend.execute(PAIRS)

    async def insert_twice() -> None:
        async with backend.transaction() as tx:
            await tx.execute("INSERT INTO pairs (id, a, b) VALUES (1, 'x', 'y')")
            await tx.execute("INSERT INTO pairs (id, a, b) VALUES (1, 'dup', 'dup')")

    with pytest.raises(SQL_ERRORS):
        await insert_twice()
    assert await count(backend, "pairs") == 0


async def test_uncommitted_writes_are_invisible_and_committed_ones_visible_at_once(
    backend: ShardBackend,
) -> None:
    await backend.execute(PAIRS)
    async with backend.transaction() as tx:
        await tx.execute("INSERT INTO pairs (id, a, b) VALUES (1, 'x', 'y')")
        # `fetch` reads committed data only, and is not blocked by the open transaction.
        assert await asyncio.wait_for(count(backend, "pairs"), 2) == 0
    assert await count(backend, "pairs") == 1


async def test_read_your_writes_right_after_each_commit(backend: ShardBackend) -> None:
    """On SQLite the write goes through the writer connection and the read through
    the reader: the read must still see every committed write, every time."""
    await backend.execute("CREATE TABLE counter (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)")
    await backend.execute("INSERT INTO counter (id, n) VALUES (1, 0)")
    for n in range(1, 31):
        if n % 2:
            await backend.execute("UPDATE counter SET n = $1 WHERE id = 1", n)
        else:
            async with backend.transaction() as tx:
                await tx.execute("UPDATE counter SET n = $1 WHERE id = 1", n)
        assert await backend.fetchval("SELECT n FROM counter WHERE id = 1") == n


async def test_concurrent_conditional_writes_on_one_version_have_exactly_one_winner(
    backend: ShardBackend,
) -> None:
    # The contract (ShardBackend's docstring): transactions run at the database's
    # default isolation, so a read-then-write is guarded by a version condition.
    await backend.execute("CREATE TABLE counter (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)")
    await backend.execute("INSERT INTO counter (id, n) VALUES (1, 0)")

    async def bump_from(seen: int) -> int:
        async with backend.transaction() as tx:
            await asyncio.sleep(0)  # let the other tasks run between the read and the write
            return await tx.execute(
                "UPDATE counter SET n = $1 WHERE id = 1 AND n = $2", seen + 1, seen
            )

    seen = await backend.fetchval("SELECT n FROM counter WHERE id = 1")
    changed = await asyncio.gather(*(bump_from(seen) for _ in range(20)))
    assert sorted(changed) == [0] * 19 + [1]
    assert await backend.fetchval("SELECT n FROM counter WHERE id = 1") == 1


async def test_concurrent_atomic_increments_lose_no_update(backend: ShardBackend) -> None:
    await backend.execute("CREATE TABLE counter (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)")
    await backend.execute("INSERT INTO counter (id, n) VALUES (1, 0)")

    async def increment() -> None:
        async with backend.transaction() as tx:
            await tx.execute("UPDATE counter SET n = n + 1 WHERE id = 1")

    await asyncio.gather(*(increment() for _ in range(20)))
    assert await backend.fetchval("SELECT n FROM counter WHERE id = 1") == 20


# -- scripts ---------------------------------------------------------------------------------


async def test_write_commits_one_statement_returns_its_rows_and_keeps_out_of_transactions(
    backend: ShardBackend,
) -> None:
    await backend.execute(PAIRS)
    rows = await backend.write("INSERT INTO pairs VALUES (1, 'a', 'b') RETURNING id, a")
    assert rows == [{"id": 1, "a": "a"}]
    assert await backend.write("UPDATE pairs SET a = 'z' WHERE id = 2 RETURNING id") == []
    assert await count(backend, "pairs") == 1  # committed: visible to a read at once
    # A write while another coroutine's transaction is open is not part of it.
    writes: list[asyncio.Task[list[dict]]] = []

    async def write_during_a_transaction_that_rolls_back() -> None:
        async with backend.transaction() as tx:
            await tx.execute("INSERT INTO pairs VALUES (2, 'in', 'tx')")
            writes.append(
                asyncio.create_task(backend.write("INSERT INTO pairs VALUES (3, 'w', 'w')"))
            )
            await asyncio.sleep(0.05)
            raise RuntimeError("roll back")

    with pytest.raises(RuntimeError, match="roll back"):
        await write_during_a_transaction_that_rolls_back()
    await writes[0]
    assert [r["id"] for r in await backend.fetch("SELECT id FROM pairs ORDER BY id")] == [1, 3]


async def test_run_script_runs_every_statement(backend: ShardBackend) -> None:
    script = (
        "-- two tables and a row\n"
        "CREATE TABLE one (id INTEGER PRIMARY KEY);\n"
        "CREATE TABLE two (\n"
        "    id INTEGER PRIMARY KEY, -- a comment inside a statement\n"
        "    label TEXT NOT NULL\n"
        ");\n"
        "INSERT INTO two (id, label) VALUES (1, 'a');\n"
    )
    async with backend.transaction() as tx:
        await backend.run_script(tx, script)
    assert await count(backend, "one") == 0
    assert await backend.fetch("SELECT id, label FROM two") == [{"id": 1, "label": "a"}]


async def test_run_script_is_atomic(backend: ShardBackend) -> None:
    await backend.execute(PAIRS)
    script = (
        "INSERT INTO pairs (id, a, b) VALUES (1, 'x', 'y');\n"
        "CREATE TABLE made_by_script (id INTEGER PRIMARY KEY);\n"
        "INSERT INTO no_such_table VALUES (1);\n"
    )
    with pytest.raises(SQL_ERRORS):
        async with backend.transaction() as tx:
            await backend.run_script(tx, script)
    assert await count(backend, "pairs") == 0
    with pytest.raises(SQL_ERRORS):
        await count(backend, "made_by_script")


# -- availability ----------------------------------------------------------------------------


async def test_ping_answers_and_after_close_every_call_raises_shard_unavailable(
    backend: ShardBackend,
) -> None:
    await backend.ping()
    await backend.execute(PAIRS)
    await backend.close()
    with pytest.raises(ShardUnavailable):
        await backend.fetch("SELECT id FROM pairs")
    with pytest.raises(ShardUnavailable):
        await backend.execute("INSERT INTO pairs (id, a, b) VALUES (1, 'x', 'y')")
    with pytest.raises(ShardUnavailable):
        async with backend.transaction() as tx:
            await tx.execute("INSERT INTO pairs (id, a, b) VALUES (1, 'x', 'y')")
    with pytest.raises(ShardUnavailable) as caught:
        await backend.ping()
    assert caught.value.shard == "shard.0"


async def test_postgres_on_a_closed_port_is_unavailable_at_once() -> None:
    backend = PostgresBackend(
        "shard.3", f"postgresql://postgres@127.0.0.1:{free_port()}/keel", connect_timeout=0.5
    )
    started = time.monotonic()
    with pytest.raises(ShardUnavailable) as caught:
        await backend.open()
    assert time.monotonic() - started < 2
    assert caught.value.shard == "shard.3"
    await backend.close()


async def test_postgres_that_never_answers_times_out_within_connect_timeout(
    silent_server: int,
) -> None:
    backend = PostgresBackend(
        "shard.1", f"postgresql://postgres@127.0.0.1:{silent_server}/keel", connect_timeout=0.5
    )
    started = time.monotonic()
    with pytest.raises(ShardUnavailable):
        await backend.open()
    assert time.monotonic() - started < 2
    await backend.close()


async def test_postgres_query_over_query_timeout_is_unavailable(pg_databases) -> None:
    backend = PostgresBackend("shard.0", await pg_databases(), query_timeout=0.2)
    await backend.open()
    try:
        started = time.monotonic()
        with pytest.raises(ShardUnavailable):
            await backend.fetch("SELECT pg_sleep(2)")
        assert time.monotonic() - started < 1.5
        await backend.ping()  # the pool recovered the connection
    finally:
        await backend.close()


async def test_sqlite_file_in_an_unwritable_place_is_unavailable(tmp_path: Path) -> None:
    blocker = tmp_path / "a-regular-file"
    blocker.write_text("not a directory")
    for path in (blocker / "shard.db", blocker / "sub" / "shard.db"):
        backend = SQLiteBackend("shard.2", str(path))
        with pytest.raises(ShardUnavailable) as caught:
            await backend.open()
        assert caught.value.shard == "shard.2"
        await backend.close()


async def test_sqlite_path_that_is_a_directory_is_unavailable(tmp_path: Path) -> None:
    backend = SQLiteBackend("shard.0", str(tmp_path))
    with pytest.raises(ShardUnavailable):
        await backend.open()
    await backend.close()


# -- pure helpers ----------------------------------------------------------------------------


def test_to_sqlite_rewrites_numbered_parameters_keeping_their_numbers() -> None:
    assert to_sqlite("SELECT * FROM t WHERE a = $1 AND b = $2") == (
        "SELECT * FROM t WHERE a = ?1 AND b = ?2"
    )
    assert to_sqlite("VALUES ($2, $1, $2)") == "VALUES (?2, ?1, ?2)"
    assert to_sqlite("LIMIT $10 OFFSET $1") == "LIMIT ?10 OFFSET ?1"
    assert to_sqlite("SELECT 1") == "SELECT 1"


def test_split_statements_splits_at_line_end_semicolons_and_drops_comment_lines() -> None:
    script = (
        "-- header comment\n"
        "CREATE TABLE a (\n"
        "    id INTEGER PRIMARY KEY\n"
        ");\n"
        "\n"
        "  -- indented comment\n"
        "INSERT INTO a (id) VALUES (1);   \n"
        "INSERT INTO a (id) VALUES (2)"
    )
    assert split_statements(script) == [
        "CREATE TABLE a (\n    id INTEGER PRIMARY KEY\n)",
        "INSERT INTO a (id) VALUES (1)",
        "INSERT INTO a (id) VALUES (2)",
    ]
    assert split_statements("") == []
    assert split_statements("-- only a comment\n\n") == []


def test_split_statements_keeps_a_semicolon_inside_a_line() -> None:
    # A ';' that is not at a line end (e.g. in a string) does not split.
    assert split_statements("INSERT INTO t VALUES ('a;b');\nSELECT 1;\n") == [
        "INSERT INTO t VALUES ('a;b')",
        "SELECT 1",
    ]


def test_split_statements_handles_a_comment_after_the_semicolon() -> None:
    """`CREATE ...; -- why` is ordinary SQL and runs on PostgreSQL as is."""
    assert split_statements(
        "CREATE TABLE a (id INTEGER); -- first\nCREATE TABLE b (id INTEGER);"
    ) == [
        "CREATE TABLE a (id INTEGER)",
        "CREATE TABLE b (id INTEGER)",
    ]
