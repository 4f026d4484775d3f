"""The throwaway PostgreSQL databases really exist while a test runs."""

from __future__ import annotations

import asyncpg


async def test_a_throwaway_database_accepts_connections(pg_databases) -> None:
    dsn = await pg_databases()
    connection = await asyncpg.connect(dsn)
    try:
        assert await connection.fetchval("SELECT current_database()") == dsn.rsplit("/", 1)[1]
    finally:
        await connection.close()
