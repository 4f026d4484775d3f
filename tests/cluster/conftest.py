"""A cluster of real processes: nginx (Debian's package) and `run.py serve` instances.

They share the machine's Redis (under a key prefix of the module's own),
RabbitMQ (queues named for the module) and PostgreSQL (two shard databases
created for the module and dropped after it). One 3-instance cluster serves
every test of a module: starting one costs seconds on a 2-core machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import aiormq
import pytest
import pytest_asyncio

from tests.cluster.cluster_process import ClusterProcess
from tests.queue.conftest import QUEUE_PREFIX, amqp_url, delete_queues
from tests.support.postgres import create_database, drop_database, run_as_admin
from tests.support.redis import delete_redis_keys
from tests.support.services import AMQP_URL, RUN_ID, service_missing

__all__ = ["amqp_url"]  # the queue tests' fixture: RabbitMQ, or a skip (a failure under CI)


@dataclass(frozen=True)
class Services:
    """What one cluster shares with nobody else on the machine's services."""

    redis_url: str
    redis_prefix: str
    shards: tuple[str, ...]
    queue_name: str


@pytest.fixture(scope="session")
def nginx_installed() -> None:
    if shutil.which("nginx", path="/usr/sbin:/usr/local/sbin:/usr/bin") is None:
        service_missing("nginx (Debian package nginx)")


@pytest.fixture(scope="module")
def services(redis_url: str, pg_admin_url: str, amqp_url: str) -> Iterator[Services]:
    """A Redis prefix, two PostgreSQL shards and a queue name, cleaned up afterwards."""
    token = uuid.uuid4().hex[:8]
    names = [f"keel_test_{RUN_ID}_{token}_{n}" for n in range(2)]
    asyncio.run(run_as_admin(pg_admin_url, [create_database(name) for name in names]))
    base = pg_admin_url.rsplit("/", 1)[0]
    chosen = Services(
        redis_url=redis_url,
        redis_prefix=f"keel-test:{RUN_ID}:{token}:",
        shards=tuple(f"{base}/{name}" for name in names),
        queue_name=f"{QUEUE_PREFIX}-{token}",
    )
    yield chosen
    asyncio.run(run_as_admin(pg_admin_url, [drop_database(name) for name in names]))
    delete_redis_keys(redis_url, chosen.redis_prefix)
    queues = [f"{chosen.queue_name}.jobs", f"{chosen.queue_name}.dead"]
    with contextlib.suppress(OSError, aiormq.exceptions.AMQPError):
        asyncio.run(delete_queues(AMQP_URL, queues))


def cluster_toml(services: Services, *, drain_delay: float = 1.0) -> str:
    shards = ", ".join(f'"{dsn}"' for dsn in services.shards)
    return f"""
[server]
drain_delay = {drain_delay}
shutdown_timeout = 10.0

[redis]
url = "{services.redis_url}"
key_prefix = "{services.redis_prefix}"

[amqp]
url = "{AMQP_URL}"

[queue]
name = "{services.queue_name}"

[sharding]
shards = [{shards}]

[ratelimit]
# The load tests are one client (127.0.0.1) sending as fast as it can.
default = "1000000/second"

[[ratelimit.rules]]
path = "/api/items"
method = "GET"
limit = "20/minute"

[logging]
access_log = false
"""


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cluster(
    tmp_path_factory: pytest.TempPathFactory, services: Services, nginx_installed: None
) -> AsyncIterator[ClusterProcess]:
    """Three instances behind nginx, for every test of the module."""
    tmp_path = tmp_path_factory.mktemp("cluster")
    process = ClusterProcess(tmp_path, cluster_toml(services), instances=3)
    try:
        await process.start()
        yield process
    finally:
        await process.stop()
