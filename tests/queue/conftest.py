"""Queue tests on both backends: the embedded SQLite queue and the machine's RabbitMQ.

Each RabbitMQ test gets queues of its own (`keel-test-<run>-<id>.*`), deleted
after it; delay queues, created on demand, are swept at the end of the session
(they would expire on their own anyway). Backoffs, leases and poll intervals
are small so that retries and redeliveries take milliseconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiormq
import pytest
from aiohttp.test_utils import TestClient

from app.plugins.queue import QueuePlugin
from tests.support.apps import StartApp
from tests.support.apps import plugin_of as support_plugin_of
from tests.support.services import AMQP_URL, RUN_ID, service_missing

QUEUE_PREFIX = f"keel-test-{RUN_ID}"
BACKENDS = ("embedded", "rabbitmq")
TASKS_PLUGIN = "tests.queue.tasks_plugin:WatchedTasksPlugin"
PLUGINS = ["metrics", "sharding", "queue", "demo", TASKS_PLUGIN]

# Fast retries and redeliveries; the embedded queue polls often.
FAST = {
    "QUEUE__BACKOFF": "0.05",
    "QUEUE__MAX_BACKOFF": "0.2",
    "QUEUE__LEASE": "1.0",
    "QUEUE__POLL_INTERVAL": "0.05",
    "QUEUE__RELAY_INTERVAL": "0.2",
    "SERVER__SHUTDOWN_TIMEOUT": "2",
}


async def _broker_answers(url: str) -> bool:
    try:
        async with asyncio.timeout(3):
            connection = await aiormq.connect(url)
            await connection.close()
    except (OSError, TimeoutError, aiormq.exceptions.AMQPError):
        return False
    return True


@pytest.fixture(scope="session")
def amqp_url() -> Iterator[str]:
    """The machine's RabbitMQ (fails under CI when it is not reachable)."""
    if not asyncio.run(_broker_answers(AMQP_URL)):
        service_missing(f"RabbitMQ at {AMQP_URL}")
    yield AMQP_URL
    _sweep_test_queues()


def _sweep_test_queues() -> None:
    """Delete every queue this session created that is still there (delay queues)."""
    try:
        listed = subprocess.run(
            ["rabbitmqctl", "-q", "list_queues", "name"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return  # no rabbitmqctl here: the delay queues expire on their own
    names = [n.strip() for n in listed.stdout.splitlines() if n.startswith(QUEUE_PREFIX)]
    if names:
        asyncio.run(delete_queues(AMQP_URL, names))


async def delete_queues(url: str, names: list[str]) -> None:
    connection = await aiormq.connect(url)
    try:
        channel = await connection.channel()
        for name in names:
            await channel.queue_delete(name)
    finally:
        await connection.close()


@pytest.fixture
async def queue_name(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """A queue name private to this test; its RabbitMQ queues are deleted after it."""
    name = f"{QUEUE_PREFIX}-{uuid.uuid4().hex[:8]}"
    yield name
    if "amqp_url" in request.fixturenames:
        with contextlib.suppress(OSError, aiormq.exceptions.AMQPError):
            await delete_queues(AMQP_URL, [f"{name}.jobs", f"{name}.dead"])


@pytest.fixture(params=BACKENDS)
def backend_kind(request: pytest.FixtureRequest) -> str:
    if request.param == "rabbitmq":
        request.getfixturevalue("amqp_url")
    return str(request.param)


def queue_env(kind: str, queue_name: str, **env: str) -> dict[str, str]:
    settings = {
        "PLUGINS__ENABLED": json.dumps(PLUGINS),
        "QUEUE__NAME": queue_name,
        **FAST,
    }
    if kind == "rabbitmq":
        settings["AMQP__URL"] = AMQP_URL
    settings.update(env)
    return settings


@pytest.fixture
def start_app(start_app: StartApp, backend_kind: str, queue_name: str) -> StartApp:
    """`await start_app(**env)`: the real app on this test's backend and queue name."""

    async def start(**env: str) -> TestClient:
        settings = queue_env(backend_kind, queue_name, **env)
        return await start_app(json.loads(settings.pop("PLUGINS__ENABLED")), **settings)

    return start


def plugin_of(client: TestClient) -> QueuePlugin:
    plugin = support_plugin_of(client.app, "queue")
    assert isinstance(plugin, QueuePlugin)
    return plugin


async def submit(client: TestClient, task: str, **body: Any) -> dict[str, Any]:
    response = await client.post("/api/jobs", json={"task": task, **body})
    assert response.status == 202, await response.text()
    job: dict[str, Any] = await response.json()
    return job


async def wait_for(
    client: TestClient,
    job_id: str,
    *statuses: str,
    timeout: float = 10.0,
) -> dict[str, Any]:
    """Poll GET /api/jobs/{id} until its status is one of `statuses`."""
    deadline = time.monotonic() + timeout
    job: dict[str, Any] = {}
    while time.monotonic() < deadline:
        response = await client.get(f"/api/jobs/{job_id}")
        assert response.status == 200, await response.text()
        job = await response.json()
        if job["status"] in statuses:
            return job
        await asyncio.sleep(0.02)
    raise AssertionError(f"job {job_id} did not become {statuses} within {timeout}s: {job}")


def data_dir(client: TestClient) -> Path:
    from app.application import CONFIG

    return client.app[CONFIG].current.server.data_path
