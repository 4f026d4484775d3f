"""`POST /api/jobs` and `GET /api/jobs/{id}` on both backends: every status and refusal."""

from __future__ import annotations

import asyncio
import time

from aiohttp.test_utils import TestClient

from tests.queue.conftest import submit, wait_for
from tests.support.apps import StartApp

JOB_KEYS = {"id", "task", "status", "attempts", "result", "error", "created_at", "updated_at"}


async def test_accepted_job_runs_and_reads_back(start_app: StartApp) -> None:
    client = await start_app()
    response = await client.post("/api/jobs", json={"task": "demo.echo", "args": {"hi": [1, 2]}})
    assert response.status == 202
    job = await response.json()
    assert set(job) == JOB_KEYS
    assert (job["task"], job["status"], job["attempts"]) == ("demo.echo", "queued", 0)
    assert response.headers["Location"] == f"/api/jobs/{job['id']}"
    assert "Idempotent-Replayed" not in response.headers
    done = await wait_for(client, job["id"], "succeeded")
    assert done["result"] == {"hi": [1, 2]}
    assert (done["attempts"], done["error"]) == (1, None)
    assert done["created_at"] == job["created_at"] <= done["updated_at"]


async def test_unknown_task_and_bad_args_are_422_with_every_problem(start_app: StartApp) -> None:
    client = await start_app()
    response = await client.post(
        "/api/jobs", json={"task": "no.such", "args": {}, "delay": "soon", "extra": 1}
    )
    assert response.status == 422
    error = (await response.json())["error"]
    assert error["code"] == "invalid"
    assert [d["field"] for d in error["details"]] == ["extra", "task", "delay"]
    assert "demo.echo" in error["details"][1]["message"]  # says which tasks exist

    response = await client.post(
        "/api/jobs", json={"task": "demo.sleep", "args": {"seconds": -1, "x": 1}}
    )
    assert response.status == 422
    details = (await response.json())["error"]["details"]
    assert details == [
        {"field": "args.x", "message": "unknown field"},
        {"field": "args.seconds", "message": "expected a value >= 0"},
    ]
    bodies: list[object] = [{"task": "demo.echo", "max_attempts": 0}, {"task": "demo.flaky"}, []]
    for body in bodies:
        response = await client.post("/api/jobs", json=body)
        assert response.status == 422, body


async def test_malformed_requests_get_their_json_errors(start_app: StartApp) -> None:
    client = await start_app()
    response = await client.post(
        "/api/jobs", data=b"{", headers={"Content-Type": "application/json"}
    )
    assert (response.status, (await response.json())["error"]["code"]) == (400, "bad_json")
    response = await client.post("/api/jobs", data=b"task=x")
    assert response.status == 415
    response = await client.get("/api/jobs/nope")
    assert (response.status, (await response.json())["error"]["code"]) == (404, "not_found")
    response = await client.get("/api/jobs/bad%20id")
    assert response.status == 422
    response = await client.delete("/api/jobs/x")
    assert response.status == 405


async def test_idempotency_key_returns_the_same_job(start_app: StartApp) -> None:
    client = await start_app()
    headers = {"Idempotency-Key": "order-42"}
    body = {"task": "test.count", "args": {"key": "k"}}
    first = await client.post("/api/jobs", json=body, headers=headers)
    assert first.status == 202
    job = await first.json()
    await wait_for(client, job["id"], "succeeded")
    again = await client.post("/api/jobs", json=body, headers=headers)
    assert again.status == 202
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.headers["Location"] == first.headers["Location"]
    replayed = await again.json()
    assert (replayed["id"], replayed["status"]) == (job["id"], "succeeded")
    # Another key, or none, is another job.
    other = await submit(client, "test.count", args={"key": "k"})
    assert other["id"] != job["id"]
    from tests.queue.tasks_plugin import RUNS

    await wait_for(client, other["id"], "succeeded")
    assert client.app[RUNS]["k"] == 2  # the replay did not run it again


async def test_concurrent_requests_with_one_key_make_one_job(start_app: StartApp) -> None:
    client = await start_app()
    headers = {"Idempotency-Key": '"same"'}
    body = {"task": "test.count", "args": {"key": "c"}}
    responses = await asyncio.gather(
        *(client.post("/api/jobs", json=body, headers=headers) for _ in range(8))
    )
    assert {r.status for r in responses} == {202}
    ids = {(await r.json())["id"] for r in responses}
    assert len(ids) == 1
    await wait_for(client, ids.pop(), "succeeded")
    from tests.queue.tasks_plugin import RUNS

    await asyncio.sleep(0.2)
    assert client.app[RUNS]["c"] == 1


async def test_a_key_reused_for_another_request_is_422(start_app: StartApp) -> None:
    client = await start_app()
    headers = {"Idempotency-Key": "k-1"}
    assert (
        await client.post("/api/jobs", json={"task": "demo.echo"}, headers=headers)
    ).status == 202
    response = await client.post(
        "/api/jobs", json={"task": "demo.echo", "args": {"x": 1}}, headers=headers
    )
    assert response.status == 422
    (detail,) = (await response.json())["error"]["details"]
    assert detail["field"] == "Idempotency-Key"
    response = await client.post(
        "/api/jobs", json={"task": "demo.echo"}, headers={"Idempotency-Key": "has space"}
    )
    assert response.status == 422


async def test_delay_holds_the_first_attempt_back(start_app: StartApp) -> None:
    client = await start_app()
    started = time.monotonic()
    job = await submit(client, "demo.echo", args={"n": 1}, delay=0.6)
    await asyncio.sleep(0.3)
    assert (await (await client.get(f"/api/jobs/{job['id']}")).json())["status"] == "queued"
    await wait_for(client, job["id"], "succeeded")
    assert time.monotonic() - started >= 0.6


async def _status(client: TestClient, job_id: str) -> str:
    return str((await (await client.get(f"/api/jobs/{job_id}")).json())["status"])
