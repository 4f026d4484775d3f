"""Running jobs on both backends: retries with backoff, dead-lettering, timeouts, the
operator's requeue and purge, concurrency, events and metrics."""

from __future__ import annotations

import asyncio
import time

from aiohttp.test_utils import TestClient

from app.queue.embedded import EmbeddedQueue
from app.queue.job_events import JOB_EVENTS, JobEvent
from app.queue.message import JobMessage
from app.queue.service import QUEUE
from tests.queue.conftest import plugin_of, submit, wait_for
from tests.queue.tasks_plugin import GATES, RUNS, STARTED
from tests.support.apps import StartApp
from tests.support.polling import eventually


async def test_retries_back_off_exponentially_then_succeed(start_app: StartApp) -> None:
    client = await start_app(QUEUE__BACKOFF="0.1", QUEUE__MAX_BACKOFF="10")
    started = time.monotonic()
    job = await submit(client, "demo.flaky", args={"failures": 2})
    done = await wait_for(client, job["id"], "succeeded")
    # Attempt 2 waits backoff (0.1 s), attempt 3 waits 2 x backoff (0.2 s).
    assert time.monotonic() - started >= 0.3
    assert (done["attempts"], done["result"], done["error"]) == (3, {"attempts": 3}, None)


async def test_a_job_that_keeps_failing_is_dead_after_max_attempts(start_app: StartApp) -> None:
    client = await start_app()
    job = await submit(client, "demo.fail", max_attempts=3)
    dead = await wait_for(client, job["id"], "dead")
    assert dead["attempts"] == 3
    assert dead["error"] == "DemoFailure: demo.fail always fails"
    plugin = plugin_of(client)

    async def dead_lettered() -> bool:
        # The record says "dead" first; the message reaches the dead queue right after.
        return len(await plugin.dead_jobs()) == 1

    await eventually(dead_lettered, "the job in the dead queue")
    (letter,) = await plugin.dead_jobs()
    assert (letter["id"], letter["task"], letter["reason"]) == (
        job["id"],
        "demo.fail",
        dead["error"],
    )
    await plugin.queue.refresh()
    assert plugin.state()["dead"] == 1


async def test_the_default_max_attempts_applies(start_app: StartApp) -> None:
    client = await start_app(QUEUE__MAX_ATTEMPTS="2")
    job = await submit(client, "demo.fail")
    assert (await wait_for(client, job["id"], "dead"))["attempts"] == 2


async def test_a_task_over_its_timeout_fails_and_retries(start_app: StartApp) -> None:
    client = await start_app()
    job = await submit(client, "test.slow", args={"seconds": 5}, max_attempts=2)
    dead = await wait_for(client, job["id"], "dead")
    assert (dead["attempts"], dead["error"]) == (2, "timed out after 0.2s")
    quick = await submit(client, "test.slow", args={"seconds": 0})
    assert (await wait_for(client, quick["id"], "succeeded"))["attempts"] == 1


async def test_a_timeout_of_the_tasks_own_is_its_error_not_the_deadline(
    start_app: StartApp,
) -> None:
    client = await start_app()
    job = await submit(client, "test.own_timeout", max_attempts=1)
    dead = await wait_for(client, job["id"], "dead")
    assert dead["error"] == "TimeoutError: the upstream did not answer"


async def test_a_result_that_is_not_json_fails_the_attempt(start_app: StartApp) -> None:
    client = await start_app()
    job = await submit(client, "test.bad_result", max_attempts=1)
    dead = await wait_for(client, job["id"], "dead")
    assert dead["error"].startswith("the result is not JSON-serializable")


async def test_a_task_this_worker_does_not_know_is_retried_then_dead(start_app: StartApp) -> None:
    client = await start_app()
    queue = client.app[QUEUE]
    # Accepted by an instance that knows the task, run by one that does not.
    record, _ = await queue.store.insert(
        "job-unknown", "elsewhere.only", {}, max_attempts=2, run_at=0, relay_after=0
    )
    assert await queue.publish(record)
    dead = await wait_for(client, "job-unknown", "dead")
    assert dead["error"] == 'task "elsewhere.only" is not registered on this instance'


async def test_requeue_one_dead_job_and_purge_the_rest(start_app: StartApp) -> None:
    client = await start_app(QUEUE__REQUEUE_RATE="20")
    plugin = plugin_of(client)
    jobs = [await submit(client, "demo.fail", max_attempts=1) for _ in range(3)]
    for job in jobs:
        await wait_for(client, job["id"], "dead")
    assert await plugin.requeue_dead([jobs[0]["id"]]) == 1
    # Requeued: it starts over (and, being demo.fail, dies again after one attempt).
    again = await wait_for(client, jobs[0]["id"], "dead")
    assert again["attempts"] == 1
    assert again["updated_at"] > (await _job(client, jobs[1]["id"]))["updated_at"]
    assert len(await plugin.dead_jobs()) == 3
    assert await plugin.purge_dead() == 3
    assert await plugin.dead_jobs() == []
    assert (await _job(client, jobs[1]["id"]))["status"] == "dead"  # records stay


async def test_requeue_all_is_paced_and_runs_each_again(start_app: StartApp) -> None:
    client = await start_app(QUEUE__REQUEUE_RATE="10")
    plugin = plugin_of(client)
    queue = client.app[QUEUE]
    # Dead jobs of a task that works now (say, fixed by a deploy): bury three by hand.
    for n in range(3):
        record, _ = await queue.store.insert(
            f"dead-{n}", "test.count", {"key": "again"}, max_attempts=1, run_at=0, relay_after=0
        )
        await queue.store.mark_published(record.id)
        await queue.store.mark_poisoned(record.id, 1, "died")
        await _bury(plugin, record.message(1))
    started = time.monotonic()
    assert await plugin.requeue_dead() == 3
    assert time.monotonic() - started >= 0.2  # 10/s: the 2nd and 3rd wait 0.1 s each
    for n in range(3):
        assert (await wait_for(client, f"dead-{n}", "succeeded"))["attempts"] == 1
    assert client.app[RUNS]["again"] == 3
    assert await plugin.dead_jobs() == []


async def _bury(plugin: object, message: JobMessage) -> None:
    from app.plugins.queue import QueuePlugin
    from app.queue.rabbitmq import RabbitQueue

    assert isinstance(plugin, QueuePlugin)
    backend = plugin.backend
    if isinstance(backend, RabbitQueue):
        await backend.publish_dead(message, "died")
    else:
        assert isinstance(backend, EmbeddedQueue)
        await backend._write(
            "INSERT INTO queue_messages (queue, job_id, body, available_at, reason)"
            " VALUES ($1, $2, $3, 0, 'died')",
            backend.dead_queue,
            message.id,
            message.encode(),
        )


async def test_concurrency_bounds_running_jobs(start_app: StartApp) -> None:
    client = await start_app(WORKER__CONCURRENCY="2")
    plugin = plugin_of(client)
    jobs = [await submit(client, "test.block", args={"key": f"b{n}"}) for n in range(4)]
    started = client.app[STARTED]
    await eventually(lambda: _true(len(started) == 2), "two jobs to start")
    await asyncio.sleep(0.2)
    assert len(started) == 2  # the other two wait for a slot
    assert plugin.state()["running"] == 2
    for key in list(started):
        client.app[GATES][key].set()
    await eventually(lambda: _true(len(started) == 4), "the other two to start")
    for key in list(started):
        client.app[GATES].setdefault(key, asyncio.Event()).set()
    for job in jobs:
        assert (await wait_for(client, job["id"], "succeeded"))["result"] == "released"


def _job_events(client: TestClient) -> list[JobEvent]:
    """Every job event the app emits from now on, as it is emitted."""
    seen: list[JobEvent] = []

    async def record(event: JobEvent) -> None:
        seen.append(event)

    client.app[JOB_EVENTS].subscribe(record)
    return seen


async def test_every_status_change_is_an_event_and_counted(start_app: StartApp) -> None:
    client = await start_app()
    seen = _job_events(client)
    job = await submit(client, "demo.flaky", args={"failures": 1})
    await wait_for(client, job["id"], "succeeded")
    statuses = [e.status for e in seen if e.job["id"] == job["id"]]
    # Quick attempts are recorded once, with their outcome (no "running" in between).
    assert statuses == ["queued", "failed", "succeeded"]
    assert seen[-1].message() == {"event": "succeeded", "job": seen[-1].job}
    assert seen[-1].job == await _job(client, job["id"])
    metrics = await (await client.get("/metrics")).text()
    assert 'keel_jobs_total{status="failed",task="demo.flaky"} 1.0' in metrics
    assert 'keel_jobs_total{status="succeeded",task="demo.flaky"} 1.0' in metrics
    assert 'keel_job_duration_seconds_count{task="demo.flaky"} 2.0' in metrics
    for name in ("keel_queue_depth", "keel_queue_dead", "keel_queue_outbox_backlog"):
        assert f"\n{name} " in metrics


async def test_an_attempt_that_takes_a_while_is_shown_running_first(start_app: StartApp) -> None:
    client = await start_app()
    seen = _job_events(client)
    job = await submit(client, "demo.sleep", args={"seconds": 0.6})
    running = await wait_for(client, job["id"], "running")
    assert running["attempts"] == 1
    done = await wait_for(client, job["id"], "succeeded")
    assert (done["attempts"], done["result"]) == (1, {"slept": 0.6})
    statuses = [e.status for e in seen if e.job["id"] == job["id"]]
    assert statuses == ["queued", "running", "succeeded"]


async def test_state_and_readiness_describe_the_queue(start_app: StartApp) -> None:
    client = await start_app()
    plugin = plugin_of(client)
    state = plugin.state()
    assert state["consuming"] is True
    assert state["connected"] is True
    assert state["backend"] in ("embedded", "rabbitmq")
    assert state["queue_type"] in ("sqlite", "quorum")
    assert {"depth", "dead", "running", "consumers", "outbox_backlog"} <= set(state)
    ready = await (await client.get("/readyz")).json()
    assert ready["plugins"]["queue"]["status"] == "ok"
    assert "1 consumer(s)" in ready["plugins"]["queue"]["detail"]


async def test_serve_without_consume_accepts_but_does_not_run(start_app: StartApp) -> None:
    client = await start_app(QUEUE__CONSUME="false")
    job = await submit(client, "demo.echo")
    await asyncio.sleep(0.3)
    assert (await _job(client, job["id"]))["status"] == "queued"
    assert plugin_of(client).state()["consuming"] is False


async def _job(client: object, job_id: str) -> dict:
    from aiohttp.test_utils import TestClient

    assert isinstance(client, TestClient)
    return dict(await (await client.get(f"/api/jobs/{job_id}")).json())


async def _true(value: bool) -> bool:
    return value


async def test_a_job_whose_worker_keeps_dying_is_dead_as_poison(
    start_app: StartApp, backend_kind: str
) -> None:
    """Delivered `delivery_limit` times with no outcome (each worker died mid-job): dead,
    without running it once more."""
    client = await start_app(QUEUE__CONSUME="false", QUEUE__DELIVERY_LIMIT="2")
    job = await submit(client, "test.count", args={"key": "poison"})
    await _deliver_without_outcome(plugin_of(client), job["id"], times=2)
    consumer = await start_app(QUEUE__DELIVERY_LIMIT="2")  # same shards and queue
    dead = await wait_for(consumer, job["id"], "dead")
    assert dead["error"] == (
        "delivered 3 times without an outcome (its worker died or was killed each time)"
    )
    assert consumer.app[RUNS]["poison"] == 0
    plugin = plugin_of(consumer)

    async def buried() -> bool:  # the record says dead first, then it is buried
        return [letter["id"] for letter in await plugin.dead_jobs()] == [job["id"]]

    await eventually(buried, "the job in the dead queue")


async def _deliver_without_outcome(plugin: object, job_id: str, times: int) -> None:
    from app.plugins.queue import QueuePlugin
    from app.queue.rabbitmq import RabbitQueue

    assert isinstance(plugin, QueuePlugin)
    backend = plugin.backend
    if isinstance(backend, RabbitQueue):
        # What a worker killed mid-job amounts to: the broker gets the message back.
        assert backend.link.connection is not None
        channel = await backend.link.connection.channel()
        for _ in range(times):
            got = await channel.basic_get(backend.topology.main)
            assert got.delivery.delivery_tag is not None  # type: ignore[union-attr]
            await channel.basic_nack(got.delivery.delivery_tag, requeue=True)  # type: ignore[union-attr]
        await channel.close()
    else:
        assert isinstance(backend, EmbeddedQueue)
        await backend._write(
            "UPDATE queue_messages SET deliveries = $2 WHERE job_id = $1", job_id, times
        )
