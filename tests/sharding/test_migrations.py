"""Per-shard migrations on both dialects: discovery, order, idempotence and the refusals."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg
import pytest
from aiohttp import web

from app.application import create_app
from app.sharding.backend import ShardBackend
from app.sharding.migrations import (
    MIGRATIONS_DIR,
    Migration,
    MigrationError,
    discover,
    migrate,
    schema_version,
)
from app.sharding.postgres import PostgresBackend
from tests.support.apps import ConfigFactory

SQL_ERRORS = (sqlite3.Error, asyncpg.PostgresError)


def write(directory: Path, files: dict[str, str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, sql in files.items():
        (directory / name).write_text(sql)
    return directory


async def records(backend: ShardBackend) -> list[dict[str, object]]:
    return await backend.fetch(
        "SELECT version, name, checksum FROM keel_migrations ORDER BY version"
    )


async def table_exists(backend: ShardBackend, table: str) -> bool:
    if backend.dialect == "sqlite":
        sql = "SELECT count(*) AS n FROM sqlite_master WHERE type = 'table' AND name = $1"
    else:
        sql = (
            "SELECT count(*) AS n FROM information_schema.tables"
            " WHERE table_schema = current_schema() AND table_name = $1"
        )
    return bool(await backend.fetchval(sql, table))


# Written out of order on purpose: each one needs the one before it.
CHAIN = {
    "0010_notes_index.sql": "CREATE INDEX notes_body ON notes (body);\n",
    "0001_notes.sql": "CREATE TABLE notes (id INTEGER PRIMARY KEY);\n",
    "0002_notes_body.sql": (
        "-- a column, then a row that uses it\n"
        "ALTER TABLE notes ADD COLUMN body TEXT;\n"
        "INSERT INTO notes (id, body) VALUES (1, 'hello');\n"
    ),
}


# -- discover (pure, reads files) ------------------------------------------------------------


def test_discover_orders_by_version(tmp_path: Path) -> None:
    write(tmp_path, CHAIN)
    (tmp_path / "README.md").write_text("not a migration")
    found = discover("sqlite", tmp_path)
    assert [(m.version, m.name) for m in found] == [
        (1, "notes"),
        (2, "notes_body"),
        (10, "notes_index"),
    ]
    assert found[1].sql == CHAIN["0002_notes_body.sql"]


def test_discover_prefers_the_dialect_variant_and_skips_the_other_dialect(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "0001_things.sql": "-- plain\n",
            "0001_things.sqlite.sql": "-- sqlite\n",
            "0002_only_pg.postgresql.sql": "-- postgresql\n",
            "0003_plain.sql": "-- plain 3\n",
        },
    )
    sqlite = discover("sqlite", tmp_path)
    assert [(m.version, m.sql) for m in sqlite] == [(1, "-- sqlite\n"), (3, "-- plain 3\n")]
    postgres = discover("postgresql", tmp_path)
    assert [(m.version, m.sql) for m in postgres] == [
        (1, "-- plain\n"),
        (2, "-- postgresql\n"),
        (3, "-- plain 3\n"),
    ]


@pytest.mark.parametrize(
    "name", ["1_short.sql", "0001-dash.sql", "0001_Upper.sql", "0001_x.mysql.sql", "0001_.sql"]
)
def test_discover_rejects_a_badly_named_file(tmp_path: Path, name: str) -> None:
    write(tmp_path, {"0002_fine.sql": "SELECT 1;\n", name: "SELECT 1;\n"})
    with pytest.raises(MigrationError, match="NNNN_name"):
        discover("sqlite", tmp_path)


@pytest.mark.parametrize(
    "names",
    [
        ("0001_one.sql", "0001_other.sql"),
        ("0001_one.sqlite.sql", "0001_other.sqlite.sql"),
    ],
)
def test_discover_rejects_two_migrations_with_one_number(
    tmp_path: Path, names: tuple[str, str]
) -> None:
    write(tmp_path, dict.fromkeys(names, "SELECT 1;\n"))
    with pytest.raises(MigrationError, match="0001"):
        discover("sqlite", tmp_path)


def test_the_real_migrations_exist_for_both_dialects() -> None:
    for dialect in ("sqlite", "postgresql"):
        found = discover(dialect)
        assert found, dialect
        assert found[0].version == 1
        assert [m.version for m in found] == sorted({m.version for m in found})
    assert discover("sqlite", MIGRATIONS_DIR) == discover("sqlite")


# -- migrate (both dialects) -----------------------------------------------------------------


async def test_migrate_applies_in_order_and_records_each(
    backend: ShardBackend, tmp_path: Path
) -> None:
    migrations = discover(backend.dialect, write(tmp_path / "m", CHAIN))
    report = await migrate("shard.0", backend, migrations)
    assert report.shard == "shard.0"
    assert report.applied == ("0001_notes", "0002_notes_body", "0010_notes_index")
    assert report.version == 10
    assert await records(backend) == [
        {"version": m.version, "name": m.name, "checksum": m.checksum} for m in migrations
    ]
    assert await backend.fetch("SELECT id, body FROM notes") == [{"id": 1, "body": "hello"}]
    assert await schema_version(backend) == 10


async def test_migrate_twice_applies_nothing_the_second_time(
    backend: ShardBackend, tmp_path: Path
) -> None:
    migrations = discover(backend.dialect, write(tmp_path / "m", CHAIN))
    await migrate("shard.0", backend, migrations)
    again = await migrate("shard.0", backend, discover(backend.dialect, tmp_path / "m"))
    assert again.applied == ()
    assert again.version == 10
    assert await backend.fetchval("SELECT count(*) AS n FROM notes") == 1  # 0002 ran once
    assert len(await records(backend)) == 3


async def test_migrate_applies_only_what_is_new(backend: ShardBackend, tmp_path: Path) -> None:
    directory = write(tmp_path / "m", {"0001_notes.sql": CHAIN["0001_notes.sql"]})
    first = await migrate("shard.0", backend, discover(backend.dialect, directory))
    assert (first.applied, first.version) == (("0001_notes",), 1)
    write(directory, {"0002_notes_body.sql": CHAIN["0002_notes_body.sql"]})
    second = await migrate("shard.0", backend, discover(backend.dialect, directory))
    assert (second.applied, second.version) == (("0002_notes_body",), 2)


async def test_an_edited_applied_migration_is_refused(
    backend: ShardBackend, tmp_path: Path
) -> None:
    directory = write(tmp_path / "m", CHAIN)
    await migrate("shard.0", backend, discover(backend.dialect, directory))
    write(directory, {"0002_notes_body.sql": CHAIN["0002_notes_body.sql"] + "-- tweaked\n"})
    with pytest.raises(MigrationError, match="edited") as caught:
        await migrate("shard.0", backend, discover(backend.dialect, directory))
    assert "0002_notes_body" in str(caught.value)
    assert "shard.0" in str(caught.value)


async def test_a_shard_ahead_of_the_code_is_refused(backend: ShardBackend, tmp_path: Path) -> None:
    directory = write(tmp_path / "m", CHAIN)
    await migrate("shard.0", backend, discover(backend.dialect, directory))
    (directory / "0010_notes_index.sql").unlink()  # an older release of the code
    with pytest.raises(MigrationError, match="ahead of the code") as caught:
        await migrate("shard.0", backend, discover(backend.dialect, directory))
    assert "0010" in str(caught.value)
    assert await schema_version(backend) == 10  # nothing was undone


async def test_a_failing_migration_leaves_the_shard_at_the_previous_version(
    backend: ShardBackend, tmp_path: Path
) -> None:
    directory = write(
        tmp_path / "m",
        {
            "0001_notes.sql": CHAIN["0001_notes.sql"],
            "0002_broken.sql": (
                "INSERT INTO notes (id) VALUES (1);\n"
                "CREATE TABLE half_done (id INTEGER PRIMARY KEY);\n"
                "INSERT INTO no_such_table (id) VALUES (1);\n"
            ),
            "0003_after.sql": "CREATE TABLE after_broken (id INTEGER PRIMARY KEY);\n",
        },
    )
    with pytest.raises(SQL_ERRORS):
        await migrate("shard.0", backend, discover(backend.dialect, directory))
    assert await schema_version(backend) == 1
    assert [r["version"] for r in await records(backend)] == [1]
    assert await backend.fetchval("SELECT count(*) AS n FROM notes") == 0
    assert not await table_exists(backend, "half_done")
    assert not await table_exists(backend, "after_broken")
    # Fixed, it applies from where it stopped.
    write(directory, {"0002_broken.sql": "INSERT INTO notes (id) VALUES (1);\n"})
    report = await migrate("shard.0", backend, discover(backend.dialect, directory))
    assert report.applied == ("0002_broken", "0003_after")


async def test_no_migrations_at_all_is_version_zero(backend: ShardBackend) -> None:
    report = await migrate("shard.0", backend, [])
    assert (report.applied, report.version) == ((), 0)
    assert await schema_version(backend) == 0


async def test_the_real_migrations_apply_and_create_items(backend: ShardBackend) -> None:
    report = await migrate("shard.0", backend)
    expected = discover(backend.dialect)
    assert report.applied == tuple(f"{m.version:04d}_{m.name}" for m in expected)
    assert report.version == expected[-1].version
    assert await table_exists(backend, "items")
    assert await backend.fetch("SELECT * FROM items") == []
    assert (await migrate("shard.0", backend)).applied == ()


def _migration(version: int, sql: str) -> Migration:
    return Migration(version, f"m{version}", sql)


async def test_two_instances_migrating_one_postgres_shard_at_once_both_succeed(
    pg_databases: Callable[[], Awaitable[str]],
) -> None:
    """Many instances share the PostgreSQL shards and all start with auto_migrate: two
    starting together must not both try to apply the same migration."""
    dsn = await pg_databases()
    migrations = [
        _migration(1, "CREATE TABLE notes (id INTEGER PRIMARY KEY);\n"),
        _migration(2, "INSERT INTO notes (id) VALUES (1);\n"),
    ]
    one, two = PostgresBackend("shard.0", dsn), PostgresBackend("shard.0", dsn)
    await asyncio.gather(one.open(), two.open())
    try:
        reports = await asyncio.gather(
            migrate("shard.0", one, migrations), migrate("shard.0", two, migrations)
        )
        applied = [name for report in reports for name in report.applied]
        assert sorted(applied) == sorted({*applied})  # no migration ran twice
        assert len(applied) == 2  # and both ran, on one instance or the other
        assert await one.fetchval("SELECT count(*) AS n FROM notes") == 1
    finally:
        await asyncio.gather(one.close(), two.close())


# -- through the app -------------------------------------------------------------------------


async def shard_ahead_of_the_code(pg_databases: Callable[[], Awaitable[str]]) -> str:
    """A fresh database, migrated, that also applied a version 9999 this code lacks."""
    dsn = await pg_databases()
    setup = PostgresBackend("shard.0", dsn)
    await setup.open()
    try:
        await migrate("shard.0", setup)
        await setup.execute(
            "INSERT INTO keel_migrations (version, name, checksum, applied_at)"
            " VALUES (9999, 'from_the_future', 'x', '2099-01-01T00:00:00Z')"
        )
    finally:
        await setup.close()
    return dsn


async def test_the_app_refuses_to_start_on_a_shard_ahead_of_the_code(
    pg_databases: Callable[[], Awaitable[str]], make_config: ConfigFactory
) -> None:
    dsn = await shard_ahead_of_the_code(pg_databases)
    config = make_config(PLUGINS__ENABLED='["metrics", "sharding"]', SHARDING__SHARDS=f'["{dsn}"]')
    runner = web.AppRunner(create_app(config))
    try:
        with pytest.raises(MigrationError, match="ahead of the code") as caught:
            await runner.setup()
        assert "9999" in str(caught.value)
    finally:
        await runner.cleanup()

    # The failed startup closed its connections to the shard.
    database = dsn.rsplit("/", 1)[1]
    admin = await asyncpg.connect(dsn)
    try:
        others = await admin.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
            database,
        )
    finally:
        await admin.close()
    assert others == 0


def bring_up_tasks() -> list[asyncio.Task[object]]:
    return [
        task
        for task in asyncio.all_tasks()
        if not task.done() and "_bring_up" in getattr(task.get_coro(), "__qualname__", "")
    ]


async def test_a_failed_startup_leaves_no_shard_still_connecting(
    pg_databases: Callable[[], Awaitable[str]],
    make_config: ConfigFactory,
    silent_server: int,
) -> None:
    """One shard ahead of the code stops startup while another is still connecting: the
    startup that failed must stop that one too, not leave it running (and later opening
    connections nobody closes) after the app was torn down."""
    ahead = await shard_ahead_of_the_code(pg_databases)
    slow = f"postgresql://postgres@127.0.0.1:{silent_server}/keel"
    config = make_config(
        PLUGINS__ENABLED='["metrics", "sharding"]',
        SHARDING__SHARDS=f'["{ahead}", "{slow}"]',
        SHARDING__CONNECT_TIMEOUT="1.0",
    )
    runner = web.AppRunner(create_app(config))
    try:
        with pytest.raises(MigrationError, match="ahead of the code"):
            await runner.setup()
    finally:
        await runner.cleanup()
    leftovers = bring_up_tasks()
    for task in leftovers:  # leave the loop clean whatever the outcome
        task.cancel()
    await asyncio.gather(*leftovers, return_exceptions=True)
    assert leftovers == [], "a shard was still being brought up after the app stopped"
