"""Reloading `[ratelimit]`: through `apply_reload` on the real app, and by SIGHUP on `run.py`."""

from __future__ import annotations

import signal
from pathlib import Path

import aiohttp

from app.application import apply_reload
from tests.ratelimit.conftest import StartClient, limited_config
from tests.support.apps import ConfigFactory
from tests.support.process import KeelProcess

BEFORE = """
[ratelimit]
default = "2/hour"

[[ratelimit.rules]]
path = "/api/things/{id}"
method = "POST"
limit = "1/hour"

[[ratelimit.rules]]
path = "/api/any"
limit = "1/hour"
"""

AFTER = """
[ratelimit]
default = "50/hour"
key = "header:X-API-Key"

[[ratelimit.rules]]
path = "/api/things/{id}"
method = "POST"
limit = "3/hour"

[[ratelimit.rules]]
path = "/open"
limit = "1/hour"
"""


async def test_reload_swaps_default_rules_and_key(
    start: StartClient, make_config: ConfigFactory
) -> None:
    client = await start(BEFORE)
    assert (await client.get("/api/things/1")).headers["RateLimit-Policy"] == '"default";q=2;w=3600'
    assert (await client.get("/open")).headers.get("RateLimit-Policy") is None

    changes = apply_reload(client.app, limited_config(make_config, AFTER))
    assert changes == [
        "ratelimit.default: 2/hour -> 50/hour",
        "ratelimit.key: ip -> header:X-API-Key",
        "ratelimit.rules: POST /api/things/{id} 1/hour -> POST /api/things/{id} 3/hour",
        "ratelimit.rules: removed * /api/any 1/hour",
        "ratelimit.rules: added * /open 1/hour",
    ]
    # Routes already seen are decided afresh (the per-route cache went with the old table).
    get = await client.get("/api/things/1")
    assert get.headers["RateLimit-Policy"] == '"default";q=50;w=3600'
    assert get.headers["RateLimit-Remaining"] == "49"  # a changed limit starts a fresh budget
    post = await client.post("/api/things/1")
    assert post.headers["RateLimit-Policy"] == '"POST /api/things/{id}";q=3;w=3600'
    assert (await client.get("/api/any")).headers["RateLimit-Policy"].startswith('"default"')
    assert (await client.get("/open")).headers["RateLimit-Policy"] == '"/open";q=1;w=3600'


async def test_reload_without_changes_says_nothing(
    start: StartClient, make_config: ConfigFactory
) -> None:
    client = await start(BEFORE)
    assert apply_reload(client.app, limited_config(make_config, BEFORE)) == []


def served_config(default: str) -> str:
    return f"""
[server]
drain_delay = 0
shutdown_timeout = 5

[plugins]
enabled = ["metrics", "ratelimit"]

[ratelimit]
default = "{default}"
"""


async def test_sighup_reloads_the_limits_of_a_running_server(tmp_path: Path) -> None:
    server = await KeelProcess(tmp_path, served_config("2/minute")).start()
    try:
        url = f"{server.url}/api/openapi.json"
        async with aiohttp.ClientSession() as session:
            statuses = []
            for _ in range(3):
                async with session.get(url) as response:
                    statuses.append(response.status)
            assert statuses == [200, 200, 429]

            server.config_path.write_text(served_config("100/minute"))
            server.signal(signal.SIGHUP)

            async def reloaded() -> bool:
                return "ratelimit.default: 2/minute -> 100/minute" in server.log()

            await server.wait_until(reloaded, what="the reload")
            async with session.get(url) as response:
                assert response.status == 200
                assert response.headers["RateLimit-Policy"] == '"default";q=100;w=60'
        server.signal(signal.SIGTERM)
        assert await server.exit_status() == 0
    finally:
        await server.kill()
