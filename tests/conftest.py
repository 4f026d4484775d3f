"""Shared fixtures: configs built the way production builds them, and real services.

Tests that need Redis talk to the machine's Redis under a key prefix private to
this test run. When a service is missing the test fails under `CI=true`; on a
laptop it is skipped with a message saying what to start.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import redis
import redis.asyncio as aioredis

from app.config import Config
from app.plugins import read_config
from app.redis.batcher import RedisBatcher
from tests.fake_clock import Clock

if TYPE_CHECKING:
    from tests.private_redis import PrivateRedis

REPO = Path(__file__).resolve().parent.parent
REDIS_URL = os.environ.get("KEEL_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
RUN_ID = uuid.uuid4().hex[:10]
PROBE = "tests.plugins.probe:ProbePlugin"

ConfigFactory = Callable[..., Config]


def service_missing(what: str) -> None:
    """Fail under CI (a missing service is a broken run), skip elsewhere."""
    message = f"{what} is not reachable; start it (see .ci/run) to run this test"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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
def clock() -> Clock:
    """A clock the test moves by hand (tests/fake_clock.py)."""
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


@contextlib.asynccontextmanager
async def open_batcher(url: str, **client_options: Any) -> AsyncIterator[RedisBatcher]:
    """A redis-py client and the request-path batcher on it, both closed on exit."""
    client = aioredis.Redis.from_url(url, **client_options)
    batcher = RedisBatcher(client)
    try:
        yield batcher
    finally:
        await batcher.aclose()
        await client.aclose()


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
    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    """A redis-server of this test's own, to pause (SIGSTOP) and resume at will."""
    from tests.private_redis import PrivateRedis

    if shutil.which("redis-server") is None:
        service_missing("the redis-server binary (Debian package redis-server)")
    server = PrivateRedis(tmp_path, free_port())
    try:
        yield server
    finally:
        server.stop()


PG_ADMIN_URL = os.environ.get("KEEL_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


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


async def run_as_admin(admin_url: str, statements: list[str]) -> None:
    """Run statements (CREATE/DROP DATABASE) on the server's maintenance database."""
    import asyncpg

    admin = await asyncpg.connect(admin_url)
    try:
        for statement in statements:
            await admin.execute(statement)
    finally:
        await admin.close()


def create_database(name: str) -> str:
    return f'CREATE DATABASE "{name}"'


def drop_database(name: str) -> str:
    return f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'


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
