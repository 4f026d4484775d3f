"""Shared fixtures: configs built the way production builds them, apps, and real services.

Helpers that are not fixtures live in `tests/support/`. Tests that need Redis
talk to the machine's Redis under a key prefix private to this test; those
that need PostgreSQL get throwaway databases. When a service is missing the
test fails under `CI=true`; on a laptop it is skipped with a message saying
what to start.
"""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import redis
from aiohttp.test_utils import TestClient

from app.application import create_app
from app.config import Config
from app.plugins import read_config
from app.redis import RedisBatcher
from tests.support.apps import ConfigFactory, StartApp
from tests.support.clock import Clock
from tests.support.postgres import create_database, drop_database, run_as_admin
from tests.support.private_redis import PrivateRedis
from tests.support.redis import delete_redis_keys, open_batcher
from tests.support.services import (
    PG_ADMIN_URL,
    REDIS_URL,
    RUN_ID,
    free_port,
    service_missing,
)


@pytest.fixture
def make_config(tmp_path: Path) -> ConfigFactory:
    """`make_config(toml_text, **env)`: load a config the way `run.py` does.

    Environment keys are given without the KEEL_ prefix: `SERVER__PORT="9000"`.
    The process environment is not read, so tests do not depend on it.
    """

    def make(toml: str = "", **env: str) -> Config:
        path = tmp_path / f"config-{uuid.uuid4().hex[:6]}.toml"
        path.write_text(toml)
        full_env = {"KEEL_SERVER__DATA_DIR": str(tmp_path / "data")}
        full_env.update({f"KEEL_{k}": v for k, v in env.items()})
        return read_config(path, full_env)

    return make


@pytest.fixture
def start_app(aiohttp_client: Any, make_config: ConfigFactory) -> StartApp:
    """`await start_app(plugins, toml="", **env)`: a test client of the real app with
    exactly these plugins (packages override this fixture with their own defaults)."""

    async def start(plugins: Sequence[str], toml: str = "", **env: str) -> TestClient:
        config = make_config(toml, PLUGINS__ENABLED=json.dumps(list(plugins)), **env)
        client: TestClient = await aiohttp_client(create_app(config))
        return client

    return start


@pytest.fixture
def clock() -> Clock:
    """A clock the test moves by hand (tests/support/clock.py)."""
    return Clock()


@pytest.fixture(scope="session")
def redis_url() -> str:
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1)
    try:
        client.ping()
    except redis.RedisError:
        service_missing(f"Redis at {REDIS_URL}")
    finally:
        client.close()
    return REDIS_URL


@pytest.fixture
async def redis_batch(redis_url: str) -> AsyncIterator[RedisBatcher]:
    """The machine's Redis through a batcher of the test's own (`redis_batch.client` too)."""
    async with open_batcher(redis_url) as batcher:
        yield batcher


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    """A key prefix private to this test; its keys are deleted afterwards."""
    prefix = f"keel-test:{RUN_ID}:{uuid.uuid4().hex[:6]}:"
    yield prefix
    delete_redis_keys(redis_url, prefix)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    """A redis-server of this test's own, to pause (SIGSTOP) and resume at will."""
    if shutil.which("redis-server") is None:
        service_missing("the redis-server binary (Debian package redis-server)")
    server = PrivateRedis(tmp_path, free_port())
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def pg_admin_url() -> str:
    """The machine's PostgreSQL (fails under CI when it is not reachable)."""
    import asyncio

    import asyncpg

    async def ping() -> None:
        connection = await asyncpg.connect(PG_ADMIN_URL, timeout=2)
        await connection.close()

    try:
        asyncio.run(ping())
    except (OSError, asyncpg.PostgresError, TimeoutError):
        service_missing(f"PostgreSQL at {PG_ADMIN_URL}")
    return PG_ADMIN_URL


@pytest.fixture
async def pg_databases(pg_admin_url: str) -> AsyncIterator[Callable[[], Awaitable[str]]]:
    """`await make()` creates a throwaway database and returns its DSN; all dropped after."""
    created: list[str] = []
    base = pg_admin_url.rsplit("/", 1)[0]

    async def make() -> str:
        name = f"keel_test_{RUN_ID}_{uuid.uuid4().hex[:8]}"
        await run_as_admin(pg_admin_url, [create_database(name)])
        created.append(name)
        return f"{base}/{name}"

    yield make
    await run_as_admin(pg_admin_url, [drop_database(name) for name in created])
