"""Signals against a real `run.py` process: the drain, a second signal, SIGHUP."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest

from tests.support.apps import PROBE
from tests.support.process import KeelProcess

Start = Callable[..., "asyncio.Future[KeelProcess]"]


def config_toml(
    *,
    drain_delay: float,
    shutdown_timeout: float,
    level: str = "info",
    extra_plugins: tuple[str, ...] = (),
) -> str:
    plugins = ", ".join(f'"{p}"' for p in ("metrics", PROBE, *extra_plugins))
    return f"""
[server]
drain_delay = {drain_delay}
shutdown_timeout = {shutdown_timeout}

[plugins]
enabled = [{plugins}]

[logging]
level = "{level}"
"""


@pytest.fixture
async def keel(tmp_path: Path) -> AsyncIterator[Callable]:
    started: list[KeelProcess] = []

    async def start(toml: str, *args: str) -> KeelProcess:
        process = await KeelProcess(tmp_path, toml, *args).start()
        started.append(process)
        return process

    yield start
    for process in started:
        await process.kill()


async def get(url: str) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.json()


async def test_sigterm_drains_an_in_flight_request_and_exits_0(keel) -> None:
    server = await keel(config_toml(drain_delay=1.5, shutdown_timeout=10))
    slow = asyncio.create_task(get(f"{server.url}/test/slow?seconds=2.5"))
    await asyncio.sleep(0.3)  # the slow request is in flight
    server.signal(signal.SIGTERM)
    await server.wait_until(lambda: _in_log(server, "received SIGTERM"), what="the drain")

    # During the drain delay the listener is open and readiness says 503.
    status, body = await get(f"{server.url}/readyz")
    assert status == 503
    assert body["status"] == "draining"

    assert await slow == (200, {"slept": 2.5})
    assert await server.exit_status() == 0
    log = server.log()
    assert "received SIGTERM: draining" in log
    assert "shutdown report: drained 1 of 1 in-flight request(s)" in log
    assert "did not finish" not in log


async def test_requests_over_shutdown_timeout_are_cut_off_and_reported(keel) -> None:
    server = await keel(config_toml(drain_delay=0, shutdown_timeout=0.5))
    slow = asyncio.create_task(get(f"{server.url}/test/slow?seconds=30"))
    await asyncio.sleep(0.3)
    server.signal(signal.SIGTERM)
    assert await server.exit_status(timeout=10) == 0
    with pytest.raises(aiohttp.ClientError):
        await slow
    assert "1 did not finish within shutdown_timeout: GET /test/slow" in server.log()


async def test_a_second_signal_during_the_drain_exits_1_at_once(keel) -> None:
    server = await keel(config_toml(drain_delay=60, shutdown_timeout=60))
    server.signal(signal.SIGTERM)
    await server.wait_until(lambda: _in_log(server, "draining"), what="the drain to start")
    server.signal(signal.SIGINT)
    assert await server.exit_status(timeout=5) == 1
    assert "received SIGINT again during the drain: exiting now" in server.log()


async def test_sighup_changes_the_log_level_and_refuses_a_bad_config(keel) -> None:
    server = await keel(config_toml(drain_delay=0, shutdown_timeout=5, level="info"))
    await get(f"{server.url}/test/log")
    await server.wait_until(lambda: _in_log(server, "probe info line"), what="info line")
    assert "probe debug line" not in server.log()

    server.config_path.write_text(config_toml(drain_delay=0, shutdown_timeout=5, level="debug"))
    server.signal(signal.SIGHUP)
    await server.wait_until(lambda: _in_log(server, "logging.level: info -> debug"), what="reload")
    await get(f"{server.url}/test/log")
    await server.wait_until(lambda: _in_log(server, "probe debug line"), what="debug line")

    server.config_path.write_text('[logging]\nlevel = "loud"\n')
    server.signal(signal.SIGHUP)
    await server.wait_until(lambda: _in_log(server, "reload refused"), what="refusal")
    assert 'logging.level: expected "debug"' in server.log()
    assert (await get(f"{server.url}/healthz"))[0] == 200  # still serving, same config

    server.signal(signal.SIGTERM)
    assert await server.exit_status() == 0


async def test_a_failing_teardown_is_reported_and_exits_1(keel) -> None:
    plugin = "tests.support.plugins.recording:FailsTeardownOne"
    server = await keel(config_toml(drain_delay=0, shutdown_timeout=5, extra_plugins=(plugin,)))
    server.signal(signal.SIGTERM)
    assert await server.exit_status() == 1
    assert "teardown error: plugin fails_teardown_one: teardown failed" in server.log()


def _in_log(server: KeelProcess, text: str):
    async def check() -> bool:
        return text in server.log()

    return check()
