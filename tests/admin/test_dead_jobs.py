"""Dead jobs from the dashboard, on the embedded queue and on the machine's RabbitMQ."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from app.application import create_app
from tests.admin.conftest import admin_env, login
from tests.queue.conftest import queue_env, submit, wait_for
from tests.support.apps import ConfigFactory
from tests.support.polling import eventually

PLUGINS = ["metrics", "breakers", "sharding", "queue", "demo", "admin"]


@pytest.fixture
async def client(
    aiohttp_client: Any, make_config: ConfigFactory, backend_kind: str, queue_name: str
) -> TestClient:
    env = queue_env(
        backend_kind, queue_name, PLUGINS__ENABLED=json.dumps(PLUGINS), QUEUE__REQUEUE_RATE="50"
    )
    app = create_app(make_config(**admin_env(**env)))
    started: TestClient = await aiohttp_client(app)
    return started


async def dead_jobs(client: TestClient, count: int) -> list[str]:
    """`count` jobs that died, oldest first."""
    ids = []
    for _ in range(count):
        job = await submit(client, "demo.fail", max_attempts=1)
        await wait_for(client, job["id"], "dead")
        ids.append(job["id"])

    async def all_buried() -> bool:
        # The record says dead a moment before the message reaches the dead queue.
        return set(ids) <= set(await listed(client))

    await eventually(all_buried, "the dead jobs in the dead queue")
    return ids


async def listed(client: TestClient, limit: int = 100) -> list[str]:
    response = await client.get(f"/admin/api/jobs/dead?limit={limit}")
    assert response.status == 200, await response.text()
    return [job["id"] for job in (await response.json())["jobs"]]


async def test_dead_jobs_are_listed_newest_first_with_why_they_died(client: TestClient) -> None:
    await login(client)
    ids = await dead_jobs(client, 3)
    assert await listed(client) == ids[::-1]
    assert await listed(client, limit=2) == ids[::-1][:2]
    body = await (await client.get("/admin/api/jobs/dead")).json()
    assert body["dead"] == 3  # counted now, not the last stats read
    assert body["jobs"][0]["task"] == "demo.fail"
    assert body["jobs"][0]["reason"] == "DemoFailure: demo.fail always fails"


async def test_requeue_and_purge_by_id_and_all(client: TestClient) -> None:
    csrf = await login(client)
    headers = {"X-CSRF-Token": csrf}
    ids = await dead_jobs(client, 4)

    requeued = await client.post(
        "/admin/api/jobs/dead/requeue", json={"ids": [ids[0]]}, headers=headers
    )
    assert (requeued.status, await requeued.json()) == (200, {"count": 1})
    again = await wait_for(client, ids[0], "dead")  # demo.fail dies again, as a new attempt
    assert again["attempts"] == 1

    purged = await client.post(
        "/admin/api/jobs/dead/purge", json={"ids": [ids[1], ids[2], "no-such-job"]}, headers=headers
    )
    assert (purged.status, await purged.json()) == (200, {"count": 2})
    assert sorted(await listed(client)) == sorted([ids[0], ids[3]])
    assert (await client.get(f"/api/jobs/{ids[1]}")).status == 200  # the record stays

    everything = await client.post(
        "/admin/api/jobs/dead/purge", json={"all": True}, headers=headers
    )
    assert (await everything.json()) == {"count": 2}
    assert await listed(client) == []

    audit = (await (await client.get("/admin/api/audit?limit=3")).json())["entries"]
    assert [(e["action"], e["target"], e["result"]) for e in audit] == [
        ("jobs.purge", "all", "count 2"),
        ("jobs.purge", f"{ids[1]}, {ids[2]}, no-such-job", "count 2"),
        ("jobs.requeue", ids[0], "count 1"),
    ]


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"ids": []},
        {"ids": "abc"},
        {"ids": [1, 2]},
        {"all": False},
        {"all": True, "ids": ["a"]},
        {"everything": True},
        [],
    ],
)
async def test_a_bad_selection_is_422(client: TestClient, body: Any) -> None:
    csrf = await login(client)
    for verb in ("requeue", "purge"):
        response = await client.post(
            f"/admin/api/jobs/dead/{verb}", json=body, headers={"X-CSRF-Token": csrf}
        )
        assert response.status == 422, (verb, body)
        assert (await response.json())["error"]["code"] == "invalid"


async def test_a_body_that_is_not_json_is_400_or_415(client: TestClient) -> None:
    csrf = await login(client)
    headers = {"X-CSRF-Token": csrf, "Content-Type": "application/json"}
    broken = await client.post("/admin/api/jobs/dead/purge", data="{nope", headers=headers)
    assert (broken.status, (await broken.json())["error"]["code"]) == (400, "bad_json")
    form = await client.post(
        "/admin/api/jobs/dead/purge", data={"all": "true"}, headers={"X-CSRF-Token": csrf}
    )
    assert form.status == 415


async def test_the_broker_password_never_shows(
    aiohttp_client: Any, make_config: ConfigFactory, amqp_url: str, queue_name: str
) -> None:
    env = queue_env("rabbitmq", queue_name, PLUGINS__ENABLED=json.dumps(PLUGINS))
    assert ":guest@" in env["AMQP__URL"]
    client: TestClient = await aiohttp_client(create_app(make_config(**admin_env(**env))))
    await login(client)
    state = await (await client.get("/admin/api/state")).text()
    assert '"backend":"rabbitmq"' in state
    assert ":guest@" not in state
