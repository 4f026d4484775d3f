"""The items API on three real shards: SQLite files, PostgreSQL databases, or both.

`client` is parametrized over the shard layout (`layout`): "sqlite" (three
SQLite files), "postgresql" (three PostgreSQL databases) and, where a test asks
for it by parametrizing `layout` itself, "mixed" (SQLite, PostgreSQL, SQLite).
`start_app(dsns, **env)` starts the app on any list of shard DSNs.

Creating three databases per test would cost about a second each, so the
PostgreSQL layouts share three databases for the whole session, emptied of
items before every test (their migrations stay applied); tests that need
brand-new databases, or break them, use `pg_databases` instead.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from tests.support.apps import StartApp
from tests.support.postgres import create_database, drop_database, run_as_admin
from tests.support.services import RUN_ID

SQLITE_SHARDS = ("sqlite:///s0.db", "sqlite:///s1.db", "sqlite:///s2.db")
ITEMS_SHARDS = 3


def _in_own_loop(coroutine: Callable[[], Awaitable[None]]) -> None:
    """Run admin work to completion without touching the test's event loop."""

    async def run() -> None:
        await coroutine()

    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, run()).result()


@pytest.fixture(scope="session")
def shared_pg_shards(pg_admin_url: str) -> Iterator[list[str]]:
    """Three PostgreSQL databases for the session, dropped at its end."""
    base = pg_admin_url.rsplit("/", 1)[0]
    names = [f"keel_test_{RUN_ID}_items_{uuid.uuid4().hex[:6]}" for _ in range(ITEMS_SHARDS)]

    _in_own_loop(lambda: run_as_admin(pg_admin_url, [create_database(n) for n in names]))
    yield [f"{base}/{name}" for name in names]
    _in_own_loop(lambda: run_as_admin(pg_admin_url, [drop_database(n) for n in names]))


async def empty_items(dsns: Sequence[str]) -> None:
    async def empty(dsn: str) -> None:
        connection = await asyncpg.connect(dsn)
        try:
            if await connection.fetchval("SELECT to_regclass('items') IS NOT NULL"):
                await connection.execute("DELETE FROM items")  # TRUNCATE is slower on tiny tables
        finally:
            await connection.close()

    await asyncio.gather(*(empty(dsn) for dsn in dsns))


@pytest.fixture(params=["sqlite", "postgresql"])
def layout(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def pg_shards(request: pytest.FixtureRequest, layout: str) -> list[str]:
    """The shared PostgreSQL databases, only when the layout uses them (SQLite never needs PG)."""
    if layout == "sqlite":
        return []
    dsns: list[str] = request.getfixturevalue("shared_pg_shards")
    return dsns


@pytest.fixture
def start_app(start_app: StartApp) -> StartApp:
    """`await start_app(dsns, **env)`: a test client of the real app on these shards."""

    async def start(shards: Sequence[str], **env: str) -> TestClient:
        settings = {
            "PLUGINS__ENABLED": '["metrics", "sharding"]',
            "SHARDING__SHARDS": json.dumps(list(shards)),
            # A busy health loop: shutdown must stop it whatever it is doing.
            "SHARDING__HEALTH_INTERVAL": "0.1",
        }
        settings.update(env)
        plugins = json.loads(settings.pop("PLUGINS__ENABLED"))
        return await start_app(plugins, **settings)

    return start


def layout_dsns(layout: str, pg: Sequence[str]) -> list[str]:
    if layout == "sqlite":
        return list(SQLITE_SHARDS)
    if layout == "postgresql":
        return list(pg)
    assert layout == "mixed", layout
    return [SQLITE_SHARDS[0], pg[1], SQLITE_SHARDS[2]]


@pytest.fixture
async def client(layout: str, pg_shards: list[str], start_app: StartApp) -> TestClient:
    await empty_items(pg_shards)
    return await start_app(layout_dsns(layout, pg_shards))
