"""`python run.py` on its defaults, as `make run` starts it: the printed token logs in,
and SIGTERM closes open dashboards with 1001."""

from __future__ import annotations

import re
import signal
from pathlib import Path

import aiohttp

from tests.admin.conftest import CSRF_FIELD
from tests.support.process import KeelProcess
from tests.support.services import REPO

PRINTED = re.compile(r"this run's operator token is (\S+)")


async def log_in(http: aiohttp.ClientSession, keel: KeelProcess, token: str) -> None:
    async with http.get(keel.url + "/") as root:  # follows / -> /admin -> /admin/login
        assert str(root.url).endswith("/admin/login")
        field = CSRF_FIELD.search(await root.text())
    assert field is not None
    data = {"token": token, "csrf_token": field[1]}
    async with http.post(keel.url + "/admin/login", data=data) as page:
        assert page.status == 200
        assert str(page.url).endswith("/admin")
        assert '<meta name="csrf-token"' in await page.text()


async def test_the_token_printed_once_at_startup_logs_in(tmp_path: Path) -> None:
    keel = KeelProcess(tmp_path, (REPO / "config.toml").read_text())
    await keel.start()
    try:
        tokens = PRINTED.findall(keel.log())
        assert len(tokens) == 1, keel.log()
        (token,) = tokens
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            await log_in(http, keel, token)
            async with http.ws_connect(keel.url + "/admin/ws") as ws:
                state = await ws.receive_json(timeout=10)
                assert state["op"] == "state"
                assert state["data"]["instances"][0]["pid"] == keel.proc.pid  # type: ignore[union-attr]
        assert token not in keel.log().replace(f"operator token is {token}", "")  # printed once
    finally:
        await keel.kill()


async def test_sigterm_closes_open_dashboards_with_1001(tmp_path: Path) -> None:
    env = {"KEEL_ADMIN__TOKEN": "a-token-of-our-own", "KEEL_SERVER__DRAIN_DELAY": "0.2"}
    keel = KeelProcess(tmp_path, (REPO / "config.toml").read_text(), env=env)
    await keel.start()
    try:
        assert "operator token is" not in keel.log()  # a configured token is never printed
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            await log_in(http, keel, "a-token-of-our-own")
            async with http.ws_connect(keel.url + "/admin/ws") as ws:
                await ws.receive_json(timeout=10)
                keel.signal(signal.SIGTERM)
                async for _ in ws:
                    pass
                assert ws.close_code == 1001
        assert await keel.exit_status() == 0
    finally:
        await keel.kill()
