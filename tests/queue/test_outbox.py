"""The outbox: jobs accepted while RabbitMQ is cut off (a TCP proxy the test cuts) all
run once it is back; consumers come back after a reconnect; relays never share a job."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp.test_utils import TestClient

from app.application import create_app
from app.queue.rabbitmq import RabbitQueue
from app.queue.records import JobStore
from tests.queue.conftest import PLUGINS, plugin_of, queue_env, submit, wait_for
from tests.queue.tasks_plugin import RUNS
from tests.support.apps import ConfigFactory, StartApp
from tests.support.polling import eventually
from tests.support.tcp_proxy import TcpProxy


@pytest.fixture
async def proxy(amqp_url: str) -> AsyncIterator[TcpProxy]:
    async with TcpProxy("127.0.0.1", 5672) as proxy:
        yield proxy


@pytest.fixture
def start_behind_proxy(
    aiohttp_client: object, make_config: ConfigFactory, proxy: TcpProxy, queue_name: str
) -> Callable[..., Awaitable[TestClient]]:
    """`await start_behind_proxy(**env)`: the app on RabbitMQ through the proxy, with the
    breakers plugin guarding `amqp`."""

    async def start(**overrides: str) -> TestClient:
        env = queue_env(
            "rabbitmq",
            queue_name,
            AMQP__URL=f"amqp://guest:guest@{proxy.address}/",
            AMQP__CONNECT_TIMEOUT="0.5",
            AMQP__PUBLISH_TIMEOUT="0.5",
            AMQP__RECONNECT_MAX="0.3",
            PLUGINS__ENABLED=json.dumps(["breakers", *PLUGINS]),
            BREAKERS__MINIMUM_CALLS="2",
            BREAKERS__OPEN_SECONDS="0.3",
            **overrides,
        )
        client: TestClient = await aiohttp_client(create_app(make_config(**env)))  # type: ignore[operator]
        return client

    return start


@pytest.fixture
async def behind_proxy(start_behind_proxy: Callable[..., Awaitable[TestClient]]) -> TestClient:
    return await start_behind_proxy()


@pytest.mark.parametrize("mode", ["refuse", "blackhole", "frozen"])
async def test_every_job_accepted_while_the_broker_is_cut_runs_once_it_is_back(
    behind_proxy: TestClient, proxy: TcpProxy, mode: str
) -> None:
    """refuse: connections fail at once; blackhole: connects hang; frozen: the open
    connection stays up but nothing gets through (publishes wait for a confirm)."""
    client = behind_proxy
    plugin = plugin_of(client)
    before = await submit(client, "test.count", args={"key": "before"})
    await wait_for(client, before["id"], "succeeded")

    if mode == "frozen":
        await proxy.cut("blackhole", drop_open=False)
    else:
        await proxy.cut(mode)  # type: ignore[arg-type]
    accepted = [await submit(client, "test.count", args={"key": f"cut-{n}"}) for n in range(10)]
    assert all(job["status"] == "queued" for job in accepted)
    await eventually(lambda: _degraded(client), "readiness to report the broker down")
    ready = await (await client.get("/readyz")).json()
    assert "accepted jobs wait in the outbox" in ready["plugins"]["queue"]["detail"]
    await asyncio.sleep(0.3)
    assert all(client.app[RUNS][f"cut-{n}"] == 0 for n in range(10))

    await proxy.restore()
    for job in accepted:
        await wait_for(client, job["id"], "succeeded", timeout=15)
    await asyncio.sleep(0.3)
    assert [client.app[RUNS][f"cut-{n}"] for n in range(10)] == [1] * 10
    await plugin.queue.refresh()
    assert plugin.state()["outbox_backlog"] == 0
    assert plugin.state()["relayed"] >= 1


async def test_a_broker_back_is_used_at_once_though_its_breaker_was_open_for_a_minute(
    start_behind_proxy: Callable[..., Awaitable[TestClient]], proxy: TcpProxy
) -> None:
    """The connection made again is the broker's probe: the outbox is sent within a
    reconnect of the broker's return, not when the breaker's open time is over."""
    client = await start_behind_proxy(BREAKERS__AMQP__OPEN_SECONDS="60")
    breaker = plugin_of(client).guard
    await proxy.cut("refuse")
    accepted = [await submit(client, "test.count", args={"key": f"wait-{n}"}) for n in range(4)]
    await eventually(lambda: breaker.state == "open", "the amqp breaker to open")
    assert breaker.retry_after() > 30

    await proxy.restore()
    for job in accepted:
        await wait_for(client, job["id"], "succeeded", timeout=15)


async def _degraded(client: TestClient) -> bool:
    ready = await (await client.get("/readyz")).json()
    return bool(ready["plugins"]["queue"]["status"] == "degraded")


async def test_consumers_are_really_back_after_the_connection_drops(
    behind_proxy: TestClient, proxy: TcpProxy
) -> None:
    client = behind_proxy
    backend = plugin_of(client).backend
    assert isinstance(backend, RabbitQueue)
    assert backend.consuming
    assert backend.consumer_count == 1
    connects = backend.connects
    await proxy.cut("refuse")
    await eventually(lambda: _is(not backend.connected), "the loss to be noticed")
    await proxy.restore()
    await eventually(lambda: _is(backend.connects > connects and backend.consuming), "reconnect")
    assert backend.consumer_count == 1  # the broker counts our consumer again
    job = await submit(client, "demo.echo", args={"after": "reconnect"})
    assert (await wait_for(client, job["id"], "succeeded"))["result"] == {"after": "reconnect"}


async def _is(value: bool) -> bool:
    return value


@pytest.mark.parametrize("backend_kind", ["rabbitmq"], indirect=True)
async def test_a_consumer_the_broker_cancels_is_restored(start_app: StartApp) -> None:
    client = await start_app()
    backend = plugin_of(client).backend
    assert isinstance(backend, RabbitQueue)
    connects = backend.connects
    # Deleting the queue makes the broker cancel every consumer on it (a failover does too).
    assert backend.link.publisher is not None
    await backend.link.publisher.queue_delete(backend.topology.main)
    await eventually(lambda: _is(backend.connects > connects and backend.consuming), "recovery")
    job = await submit(client, "demo.echo")
    await wait_for(client, job["id"], "succeeded")


async def test_two_relays_never_claim_the_same_job(start_app: StartApp) -> None:
    # The app's own relay is kept out of it (it would claim some of these itself).
    client = await start_app(QUEUE__CONSUME="false", QUEUE__RELAY_INTERVAL="3600")
    store: JobStore = plugin_of(client).queue.store
    for n in range(30):
        await store.insert(f"o-{n:02d}", "demo.echo", {}, max_attempts=1, run_at=0, relay_after=0)
    shards = list(store.shards)
    claims = await asyncio.gather(
        *(store.claim_unpublished(shard, 100, 30) for shard in shards for _ in range(3))
    )
    claimed = [record.id for batch in claims for record in batch]
    assert sorted(claimed) == [f"o-{n:02d}" for n in range(30)]  # each exactly once
