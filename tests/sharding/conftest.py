"""The `backend` fixture: one opened `ShardBackend` per dialect, so every storage test runs twice.

SQLite gets a file under `tmp_path`; PostgreSQL a throwaway database on the
machine's server (`pg_databases`). The PostgreSQL fixtures are requested only
for the PostgreSQL run, so the SQLite half still runs where PostgreSQL is absent.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from app.sharding.backend import ShardBackend
from app.sharding.postgres import PostgresBackend
from app.sharding.sqlite import SQLiteBackend

DIALECTS = ["sqlite", "postgresql"]

DsnFactory = Callable[[], Awaitable[str]]


@pytest.fixture(params=DIALECTS)
def dialect(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def new_backend(
    dialect: str, request: pytest.FixtureRequest, tmp_path: Path
) -> Callable[[], Awaitable[ShardBackend]]:
    """`await new_backend()`: a fresh, unopened backend of this run's dialect (own file or db)."""
    if dialect == "sqlite":
        counter = iter(range(1_000_000))

        async def sqlite_backend() -> ShardBackend:
            return SQLiteBackend("shard.0", str(tmp_path / f"shard{next(counter)}.db"))

        return sqlite_backend

    pg_databases: DsnFactory = request.getfixturevalue("pg_databases")

    async def postgres_backend() -> ShardBackend:
        return PostgresBackend("shard.0", await pg_databases(), connect_timeout=2.0)

    return postgres_backend


@pytest.fixture
async def backend(
    new_backend: Callable[[], Awaitable[ShardBackend]],
) -> AsyncIterator[ShardBackend]:
    """An opened backend of each dialect, closed after the test."""
    shard = await new_backend()
    await shard.open()
    try:
        yield shard
    finally:
        await shard.close()


@pytest.fixture
async def silent_server() -> AsyncIterator[int]:
    """A port that accepts TCP connections and never says a word."""
    writers: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        await reader.read()

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for writer in writers:
            writer.close()
        await server.wait_closed()
