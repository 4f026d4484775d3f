"""`static/keel-ws.js` in a real browser: it recovers when the instance it was on goes away.

Two `run.py` instances share the machine's Redis. A test page (served by the
test, with the module) subscribes through instance A; A is SIGKILLed while
messages keep coming through B; the page reconnects to B with `since` and
shows every message exactly once, in order, without a reset. Then B loses
messages from the page's history (a short one) and the page is told to reset.
Any console error or uncaught exception fails the test.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.support.browser import open_browser
from tests.support.polling import eventually
from tests.support.process import KeelProcess
from tests.support.services import REPO, free_port
from tests.websocket.conftest import Peer, instance_toml

CHANNEL = "chat.browser"

PAGE = """<!doctype html>
<meta charset="utf-8">
<title>keel-ws.js under test</title>
<link rel="icon" href="data:,">
<script type="module">
import { KeelSocket } from "/keel-ws.js";
window.log = [];
const urls = JSON.parse(new URLSearchParams(location.search).get("urls"));
window.socket = new KeelSocket(urls, {
  minDelay: 300,
  maxDelay: 1000,
  onStatus: (status) => window.log.push({ status }),
});
socket.subscribe("chat.browser", {
  message: (data, meta) => window.log.push({ data, offset: meta.offset }),
  reset: () => window.log.push({ reset: true }),
});
</script>
"""


@contextlib.asynccontextmanager
async def page_server() -> AsyncIterator[str]:
    """The test page and the module, from one origin of the test's own."""
    module = (REPO / "static" / "keel-ws.js").read_bytes()

    async def page(request: web.Request) -> web.Response:
        return web.Response(text=PAGE, content_type="text/html")

    async def script(request: web.Request) -> web.Response:
        return web.Response(body=module, content_type="text/javascript")

    app = web.Application()
    app.router.add_get("/", page)
    app.router.add_get("/keel-ws.js", script)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def instances(tmp_path: Path, toml: str) -> list[KeelProcess]:
    processes = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        processes.append(KeelProcess(tmp_path / name, toml))
    await asyncio.gather(*(p.start() for p in processes))
    return processes


async def log_of(page: Any) -> list[dict[str, Any]]:
    return list(await page.evaluate("window.log"))


def messages(log: list[dict[str, Any]]) -> list[Any]:
    return [entry["data"] for entry in log if "data" in entry]


@pytest.mark.parametrize("history_size", [100, 5], ids=["recovers", "resets"])
async def test_the_browser_module_recovers_on_another_instance(
    tmp_path: Path, redis_url: str, redis_prefix: str, history_size: int
) -> None:
    toml = instance_toml(redis_url, redis_prefix, allowed_origins=["*"], history_size=history_size)
    a, b = await instances(tmp_path, toml)
    problems: list[str] = []
    try:
        async with (
            page_server() as origin,
            open_browser() as browser,
            aiohttp.ClientSession() as http,
        ):
            page = await browser.new_page()
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            urls = f'["{a.url}/ws", "{b.url}/ws"]'.replace("http://", "ws://")
            await page.goto(f"{origin}/?urls={urls}")
            publisher = Peer(await http.ws_connect(f"{b.url}/ws"))

            async def subscribers() -> int:
                reply = await publisher.op({"op": "presence", "channel": CHANNEL})
                return int(reply["subscribers"])

            await eventually(lambda: _eq(subscribers(), 1), what="the page to subscribe on a")
            await publisher.ok({"op": "publish", "channel": CHANNEL, "data": "first"})
            await eventually(lambda: _has(page, ["first"]), what="the first message")

            await a.kill()  # SIGKILL: the page's socket drops
            await eventually(lambda: _status(page, "waiting"), what="the page to notice and wait")
            missed = [f"missed {n}" for n in range(10)]
            for data in missed:
                await publisher.ok({"op": "publish", "channel": CHANNEL, "data": data})
            await eventually(lambda: _eq(subscribers(), 1), what="the page to come back on b")
            if history_size == 100:
                await publisher.ok({"op": "publish", "channel": CHANNEL, "data": "live"})
                expected = ["first", *missed, "live"]
                await eventually(lambda: _has(page, expected), what="every message, once")
                log = await log_of(page)
                assert [e["offset"] for e in log if "data" in e] == list(range(1, 13))
                assert not any("reset" in e for e in log)
            else:  # 10 missed, 5 kept: the page must reload, then goes on live
                await eventually(lambda: _reset(page), what="the page to be told to reload")
                await publisher.ok({"op": "publish", "channel": CHANNEL, "data": "live"})
                await eventually(lambda: _has(page, ["first", "live"]), what="first and live")
                log = await log_of(page)
                assert log.index({"reset": True}) < len(log) - 1  # before "live"
            statuses = [e["status"] for e in log if "status" in e]
            assert statuses[0] == "open"  # (it starts "connecting")
            assert statuses[-1] == "open"
            assert "waiting" in statuses
            metrics = await (await http.get(f"{b.url}/metrics")).text()
            result = "recovered" if history_size == 100 else "reset"
            assert f'keel_ws_recoveries_total{{result="{result}"}} 1.0' in metrics
            await page.close()
            await publisher.ws.close()
    finally:
        await a.kill()
        await b.kill()
    assert problems == []


async def _eq(value: Any, expected: Any) -> bool:
    return bool(await value == expected)


async def _has(page: Any, expected: list[Any]) -> bool:
    return messages(await log_of(page)) == expected


async def _reset(page: Any) -> bool:
    return {"reset": True} in await log_of(page)


async def _status(page: Any, status: str) -> bool:
    return {"status": status} in await log_of(page)


async def test_keel_serves_the_module(start_app) -> None:
    client = await start_app()
    response = await client.get("/static/keel-ws.js")
    assert response.status == 200
    assert response.content_type == "text/javascript"
    body = await response.read()
    assert body == (REPO / "static" / "keel-ws.js").read_bytes()
    again = await client.get(
        "/static/keel-ws.js", headers={"If-None-Match": response.headers["ETag"]}
    )
    assert again.status == 304
