"""The queue and demo plugins as the loader and the two roles see them."""

from __future__ import annotations

import json

import pytest
from aiohttp.test_utils import TestClient

from app.application import create_app
from app.errors import PluginError
from app.plugins import PLUGINS
from app.queue.tasks import TASKS
from tests.queue.conftest import plugin_of, queue_env
from tests.support.apps import ConfigFactory
from tests.support.polling import eventually


def test_queue_requires_sharding(make_config: ConfigFactory) -> None:
    with pytest.raises(PluginError, match='"queue" requires "sharding"'):
        create_app(make_config(PLUGINS__ENABLED='["queue"]'))


async def test_demo_loads_without_the_queue_and_registers_its_tasks_with_it(
    aiohttp_client, make_config: ConfigFactory
) -> None:
    alone: TestClient = await aiohttp_client(create_app(make_config(PLUGINS__ENABLED='["demo"]')))
    assert TASKS not in alone.app
    config = make_config(PLUGINS__ENABLED='["demo", "sharding", "queue"]')
    client: TestClient = await aiohttp_client(create_app(config))
    assert client.app[TASKS].names() == ["demo.echo", "demo.fail", "demo.flaky", "demo.sleep"]
    (demo,) = [p for p in client.app[PLUGINS] if p.name == "demo"]
    assert sorted(demo.state()["tasks"]) == client.app[TASKS].names()


async def test_the_worker_role_consumes_but_serves_no_job_api(
    aiohttp_client, make_config: ConfigFactory, tmp_path
) -> None:
    env = queue_env("embedded", "keel", QUEUE__CONSUME="false")
    serve: TestClient = await aiohttp_client(create_app(make_config(**env)))
    worker: TestClient = await aiohttp_client(create_app(make_config(**env), role="worker"))
    assert (await worker.post("/api/jobs", json={"task": "demo.echo"})).status == 404
    assert (await worker.get("/readyz")).status == 200
    assert plugin_of(worker).state()["consuming"] is True
    response = await serve.post("/api/jobs", json={"task": "demo.echo", "args": {"w": 1}})
    job = await response.json()

    async def done() -> bool:
        body = await (await serve.get(f"/api/jobs/{job['id']}")).json()
        return bool(body["status"] == "succeeded")

    await eventually(done, "the worker to run the job")  # same data_dir: same queue
    assert json.loads(json.dumps(plugin_of(worker).state()))  # JSON-able for the dashboard
