"""Operator actions reach every instance through the machine's Redis, and each reports."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from aiohttp import web

from app.application import create_app
from app.breakers import BREAKERS
from app.core.lifecycle import LIFECYCLE
from tests.support.apps import ConfigFactory
from tests.support.services import free_port


@pytest.fixture
async def two_instances(
    make_config: ConfigFactory, redis_url: str, redis_prefix: str
) -> AsyncIterator[tuple[web.Application, web.Application]]:
    apps = [
        create_app(
            make_config(
                PLUGINS__ENABLED='["metrics", "redis", "breakers"]',
                REDIS__URL=redis_url,
                REDIS__KEY_PREFIX=redis_prefix,
            )
        )
        for _ in range(2)
    ]
    runners = [web.AppRunner(app) for app in apps]
    for runner in runners:
        await runner.setup()
    try:
        yield apps[0], apps[1]
    finally:
        for runner in reversed(runners):
            await runner.cleanup()


def instance(app: web.Application) -> str:
    return app[LIFECYCLE].instance.id


async def test_an_action_applies_on_every_instance_and_each_reports(
    two_instances: tuple[web.Application, web.Application],
) -> None:
    first, second = two_instances
    result = await first[BREAKERS].force_open("redis")
    assert sorted(result.applied) == sorted([instance(first), instance(second)])
    assert result.missing == []
    assert result.error == ""
    assert first[BREAKERS].get("redis").state == "forced_open"
    assert second[BREAKERS].get("redis").state == "forced_open"

    # Redis itself being "forced open" does not cut the operator off: reset from the other side.
    back = await second[BREAKERS].reset("redis")
    assert sorted(back.applied) == sorted([instance(first), instance(second)])
    assert first[BREAKERS].get("redis").state == "closed"
    assert second[BREAKERS].get("redis").state == "closed"


async def test_an_instance_without_the_breaker_says_so(
    two_instances: tuple[web.Application, web.Application],
) -> None:
    first, second = two_instances
    first[BREAKERS].get("upstream.only-here")
    result = await first[BREAKERS].disable("upstream.only-here")
    assert result.applied == [instance(first)]
    assert result.unknown == [instance(second)]
    assert first[BREAKERS].get("upstream.only-here").state == "disabled"
    assert "upstream.only-here" not in second[BREAKERS]
    assert result.as_dict()["action"] == "disable"


async def test_a_live_instance_that_does_not_answer_is_reported_missing(
    two_instances: tuple[web.Application, web.Application], redis_url: str, redis_prefix: str
) -> None:
    first, second = two_instances
    probe = aioredis.Redis.from_url(redis_url)
    try:
        await probe.zadd(f"{redis_prefix}instances", {"ghost": time.time()})
        result = await first[BREAKERS].force_open("redis")  # waits its second for the ghost
    finally:
        await probe.aclose()
    assert sorted(result.applied) == sorted([instance(first), instance(second)])
    assert result.missing == ["ghost"]


async def test_without_a_reachable_redis_the_action_applies_here_and_says_so(
    make_config: ConfigFactory, aiohttp_client: Any
) -> None:
    config = make_config(
        PLUGINS__ENABLED='["redis", "breakers"]',
        REDIS__URL=f"redis://127.0.0.1:{free_port()}/0",
    )
    client = await aiohttp_client(create_app(config))
    result = await client.app[BREAKERS].force_open("redis")
    assert result.applied == [instance(client.app)]
    assert "this instance only" in result.error
    assert client.app[BREAKERS].get("redis").state == "forced_open"
