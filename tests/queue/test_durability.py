"""No accepted job is lost: SIGKILL of a worker mid-job, SIGKILL of `serve` with the
embedded queue, and a graceful shutdown that returns unfinished jobs — real processes."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest

from tests.queue.conftest import queue_env
from tests.queue.processes import QueueProcess

Spawn = Callable[..., Awaitable[QueueProcess]]


@pytest.fixture
async def spawn(tmp_path: Path, backend_kind: str, queue_name: str) -> AsyncIterator[Spawn]:
    """`await spawn(name, role, **env)`: a started process; every one killed after the test."""
    started: list[QueueProcess] = []

    async def start(name: str, role: str, **env: str) -> QueueProcess:
        settings = queue_env(
            backend_kind, queue_name, SERVER__DRAIN_DELAY="0", LOGGING__ACCESS_LOG="false", **env
        )
        process = QueueProcess(tmp_path, name, role, {f"KEEL_{k}": v for k, v in settings.items()})
        started.append(process)
        return await process.start()

    yield start
    for process in started:
        await process.kill()


async def test_sigkill_of_a_worker_mid_job_the_job_completes_on_another(spawn: Spawn) -> None:
    api = await spawn("serve", "serve", QUEUE__CONSUME="false")
    doomed = await spawn("worker-a", "worker")
    job = await api.post_job("demo.sleep", args={"seconds": 1.0})
    running = await api.wait_for_job(job["id"], "running")
    assert running["attempts"] == 1
    doomed.signal(signal.SIGKILL)
    await doomed.exit_status()
    await spawn("worker-b", "worker")
    done = await api.wait_for_job(job["id"], "succeeded", timeout=20)
    assert done["result"] == {"slept": 1.0}
    assert done["attempts"] == 1  # the attempt ran again: it had no outcome


@pytest.mark.parametrize("backend_kind", ["embedded"], indirect=True)
async def test_sigkill_of_serve_loses_no_accepted_job(spawn: Spawn) -> None:
    server = await spawn("serve", "serve", WORKER__CONCURRENCY="2", AMQP__PUBLISH_TIMEOUT="0.5")
    accepted: list[str] = []
    enough = asyncio.Event()

    async def submit_forever() -> None:
        async with aiohttp.ClientSession() as session:
            for n in range(200):
                body = {"task": "demo.sleep", "args": {"seconds": 0.05 * (n % 4)}}
                async with session.post(f"{server.url}/api/jobs", json=body) as response:
                    if response.status == 202:
                        accepted.append((await response.json())["id"])
                if len(accepted) >= 15:
                    enough.set()

    submitting = asyncio.create_task(submit_forever())
    await enough.wait()
    server.signal(signal.SIGKILL)  # mid-submission, with jobs running and queued
    with contextlib.suppress(aiohttp.ClientError):
        await submitting
    assert await server.exit_status() == -signal.SIGKILL

    restarted = await spawn("serve-again", "serve", WORKER__CONCURRENCY="8")
    for job_id in accepted:
        done = await restarted.wait_for_job(job_id, "succeeded", timeout=30)
        assert done["result"]["slept"] >= 0


async def test_graceful_shutdown_finishes_what_it_can_and_returns_the_rest(
    spawn: Spawn,
) -> None:
    api = await spawn("serve", "serve", QUEUE__CONSUME="false")
    worker = await spawn("worker", "worker", SERVER__SHUTDOWN_TIMEOUT="1.5")
    short = await api.post_job("demo.sleep", args={"seconds": 0.8})
    long = await api.post_job("demo.sleep", args={"seconds": 30})
    await api.wait_for_job(short["id"], "running")
    await api.wait_for_job(long["id"], "running")
    worker.signal(signal.SIGTERM)
    assert await worker.exit_status() == 0
    # The short one finished within shutdown_timeout; the long one went back.
    assert (await api.job(short["id"]))["status"] == "succeeded"
    returned = await api.job(long["id"])
    assert (returned["status"], returned["attempts"]) == ("queued", 0)
    assert "returning 1 unfinished job(s) to the queue" in worker.log()
    # It is in the queue, not lost: a new worker takes it (a short run this time
    # would need another job, so watch it start).
    await spawn("worker-2", "worker")
    assert (await api.wait_for_job(long["id"], "running"))["attempts"] == 1
