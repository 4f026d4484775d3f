"""An accepted job's first publish happens after its 202, and never holds shutdown up."""

from __future__ import annotations

import asyncio
import logging

import pytest

from app.queue.first_publish import FirstPublishes
from app.queue.records import JobRecord


def record(job_id: str) -> JobRecord:
    return JobRecord(
        id=job_id,
        task="demo.echo",
        args={},
        status="queued",
        attempts=0,
        max_attempts=3,
        result=None,
        error=None,
        idempotency_key=None,
        run_at=0.0,
        published=False,
        created_at="",
        updated_at="",
    )


async def test_a_publish_not_confirmed_hands_the_job_to_the_relay() -> None:
    relayed: list[str] = []
    confirmed = asyncio.Event()

    async def publish(job: JobRecord) -> bool:
        await confirmed.wait()
        return job.id == "a"  # "b": the broker did not confirm it

    async def hand_to_relay(job: JobRecord) -> None:
        relayed.append(job.id)

    publishes = FirstPublishes(publish, hand_to_relay)
    publishes.start(record("a"))
    publishes.start(record("b"))
    assert len(publishes) == 2  # started, and nobody waited for them
    confirmed.set()
    await publishes.close(within=5)
    assert relayed == ["b"]
    assert len(publishes) == 0


async def test_close_gives_up_on_a_publish_that_hangs_and_leaves_it_to_the_relay(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def hangs(job: JobRecord) -> bool:
        await asyncio.sleep(3600)
        return True

    async def hand_to_relay(job: JobRecord) -> None:
        raise AssertionError("a cancelled publish is the relay's without a hand-over")

    publishes = FirstPublishes(hangs, hand_to_relay)
    publishes.start(record("slow"))
    with caplog.at_level(logging.WARNING, logger="keel.queue"):
        async with asyncio.timeout(5):
            await publishes.close(within=0.05)
    assert "1 accepted job(s) not published before shutdown" in caplog.text
    assert len(publishes) == 0
