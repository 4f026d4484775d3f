"""The dashboard in a real browser: Debian's chromium driven by playwright.

Two instances share the machine's Redis. The page logs in, sees numbers move
as requests arrive, keeps a purge confirmation open across live pushes, purges,
force-opens a breaker and sees it on both instances, and logs out. Any console
error, uncaught exception or CSP violation fails the test. Screenshots (1280 px
and phone width) go to `test-artefacts/` (`KEEL_TEST_ARTEFACTS` to change it).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from app.breakers import BREAKERS
from app.core.lifecycle import LIFECYCLE
from tests.admin.conftest import TOKEN, VIEWER, start_admin
from tests.queue.conftest import submit, wait_for
from tests.support.apps import ConfigFactory
from tests.support.browser import open_browser
from tests.support.polling import eventually
from tests.support.services import REPO, free_port

ARTEFACTS = Path(os.environ.get("KEEL_TEST_ARTEFACTS", REPO / "test-artefacts"))
# Seconds of generated traffic before the screenshots (longer makes fuller charts).
TRAFFIC_SECONDS = float(os.environ.get("KEEL_BROWSER_TRAFFIC_SECONDS", "5"))
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}

# Records CSP violations; injected by the browser, so the page's CSP does not apply to it.
WATCH_CSP = """
window.__csp = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__csp.push(`${e.violatedDirective} ${e.blockedURI}`);
});
"""


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    async with open_browser() as browser:
        yield browser


class Watched:
    """A page whose console errors, uncaught exceptions and CSP violations are collected."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.problems: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.problems.append(f"uncaught: {error}"))

    def _console(self, message: Any) -> None:
        if message.type == "error":
            self.problems.append(f"console error: {message.text}")

    async def assert_clean(self) -> None:
        violations = await self.page.evaluate("window.__csp")
        assert violations == [], f"CSP violations: {violations}"
        assert self.problems == [], "\n".join(self.problems)


async def open_page(browser: Any, viewport: dict[str, int] = DESKTOP) -> Watched:
    context = await browser.new_context(viewport=viewport)
    await context.add_init_script(WATCH_CSP)
    return Watched(await context.new_page())


async def log_in(watched: Watched, client: TestClient, token: str = TOKEN) -> None:
    page = watched.page
    await page.goto(str(client.make_url("/")))
    assert page.url.endswith("/admin/login")
    await page.fill("#token", token)
    await page.click("button[type=submit]")
    await page.wait_for_url("**/admin")
    await page.wait_for_selector("#live[data-state=live]")


async def until(watched: Watched, expression: str, timeout: float = 10) -> None:
    """Poll `expression` in the page until it is true. (Not wait_for_function: that evals
    a string inside the page, which the dashboard's CSP rightly refuses.)"""

    async def holds() -> bool:
        return bool(await watched.page.evaluate(expression))

    await eventually(holds, expression, timeout=timeout)


async def pushes(watched: Watched) -> int:
    return int(await watched.page.evaluate("Number(document.body.dataset.pushes ?? 0)"))


async def screenshot(watched: Watched, name: str, *, full_page: bool = True) -> Path:
    await asyncio.to_thread(ARTEFACTS.mkdir, parents=True, exist_ok=True)
    path = ARTEFACTS / name
    # From the top: a full-page capture of a scrolled page paints the sticky bar mid-page.
    await watched.page.evaluate("window.scrollTo(0, 0)")
    await watched.page.screenshot(path=str(path), full_page=full_page)
    return path


@contextlib.asynccontextmanager
async def traffic(*clients: TestClient) -> AsyncIterator[None]:
    """Requests of several kinds against every instance, at a rate that rises and falls,
    until the block ends."""

    async def run(client: TestClient, phase: float) -> None:
        base = str(client.make_url("")).rstrip("/")
        async with aiohttp.ClientSession() as http:
            created = await http.post(f"{base}/api/items", json={"name": "demo", "price": 9.5})
            item = (await created.json())["id"]
            started = time.monotonic()
            n = 0
            while True:
                n += 1
                await http.get(f"{base}/api/items/{item}")
                if n % 4 == 0:
                    await http.get(f"{base}/api/items?limit=10")
                if n % 9 == 0:
                    await http.put(f"{base}/api/items/{item}", json={"name": "d", "price": n})
                if n % 11 == 0:
                    await http.get(f"{base}/api/upstream/billing/invoices")  # 502: no upstream
                elapsed = time.monotonic() - started
                await asyncio.sleep(0.012 + 0.01 * (1 + ((elapsed + phase) % 6 > 3)))

    tasks = [asyncio.create_task(run(c, i * 1.5)) for i, c in enumerate(clients)]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


@pytest.fixture
async def pair(
    aiohttp_client: Any, make_config: ConfigFactory, redis_url: str, redis_prefix: str
) -> tuple[TestClient, TestClient]:
    env = {
        "REDIS__URL": redis_url,
        "REDIS__KEY_PREFIX": redis_prefix,
        "ADMIN__PUSH_INTERVAL": "0.25",
        "UPSTREAMS__BILLING__URL": f"http://127.0.0.1:{free_port()}/",
        "UPSTREAMS__BILLING__TIMEOUT": "1",
        "QUEUE__POLL_INTERVAL": "0.05",
        # The generated traffic and the test's own polling come from one address.
        "RATELIMIT__DEFAULT": "1000/second",
    }
    a = await start_admin(aiohttp_client, make_config, **env)
    b = await start_admin(aiohttp_client, make_config, **env)
    return a, b


async def test_the_dashboard_end_to_end(browser: Any, pair: tuple[TestClient, TestClient]) -> None:
    a, b = pair
    watched = await open_page(browser)
    await watched.page.goto(str(a.make_url("/admin/login")))
    await screenshot(watched, "login-1280.png")
    await log_in(watched, a)

    # Both instances are listed, and the numbers move as requests arrive.
    await until(watched, "document.querySelectorAll('#instances tbody tr').length === 2")
    b_id = b.app[LIFECYCLE].instance.id
    assert await _requests_of(watched, b_id) == "0/s"  # nothing has asked B anything yet
    async with traffic(a, b):
        await eventually(
            lambda: _requests_of_moved(watched, b_id), "B's requests/s to rise", timeout=10
        )
        await asyncio.sleep(TRAFFIC_SECONDS)  # fuller charts for the screenshots
        await _the_rest(browser, watched, a, b)


async def _the_rest(browser: Any, watched: Watched, a: TestClient, b: TestClient) -> None:
    """Dead jobs, breakers, screenshots and logout, while traffic keeps flowing."""
    page = watched.page
    ids = sorted(client.app[LIFECYCLE].instance.id for client in (a, b))
    assert "GET /api/items/{id}" in await page.inner_text("#legend")

    # Dead jobs: a purge confirmation survives live pushes, then purges.
    jobs = [await submit(a, "demo.fail", max_attempts=1) for _ in range(3)]
    for job in jobs:
        await wait_for(a, job["id"], "dead")

    # Live events: the items and jobs channels through /ws, read by the browser client
    # Keel ships (static/keel-ws.js); the jobs died on A, the page may be on either.
    await until(watched, "document.querySelector('#events li[data-channel=items]') !== null")
    await until(
        watched,
        """[...document.querySelectorAll('#events li[data-channel=jobs]')]
             .some((li) => /dead.*demo[.]fail/.test(li.textContent))""",
    )
    assert await page.inner_text("#events-status") == "live"
    await until(watched, "document.querySelectorAll('#dead-jobs tbody input').length === 3")
    await page.click("button[data-dead=purge][data-scope=all]")
    dialog = page.locator("#confirm")
    assert await dialog.is_visible()
    assert await page.inner_text("#confirm-title") == "Purge 3 dead jobs?"
    before = await pushes(watched)
    await eventually(lambda: _pushed_since(watched, before, 4), "four live pushes")
    assert await dialog.is_visible()
    assert await page.inner_text("#confirm-title") == "Purge 3 dead jobs?"
    await screenshot(watched, "confirm-1280.png", full_page=False)
    await page.click("#confirm-button")
    await until(
        watched, "document.getElementById('dead-result').textContent === 'Purged 3 dead jobs.'"
    )
    await page.wait_for_selector("#dead-jobs td.empty")

    # Force open a breaker: both instances apply it, and the page shows it on both.
    await page.click("button[data-breaker='shard.0'][data-action=force_open]")
    assert await page.inner_text("#confirm-title") == "Force open shard.0?"
    await page.click("#confirm-button")
    await until(
        watched, "document.getElementById('breaker-result').textContent.includes('acknowledged by')"
    )
    result = await page.inner_text("#breaker-result")
    for instance in ids:
        assert instance in result
    assert b.app[BREAKERS].get("shard.0").state == "forced_open"
    await until(
        watched,
        """() => [...document.querySelectorAll('#breakers tbody tr')]
             .find((row) => row.querySelector('th').textContent === 'shard.0')
             ?.querySelectorAll('.chip-bad').length === 2""",
    )
    await page.wait_for_selector(".banner >> text=shard.0")
    on_b = await open_page(browser)
    await log_in(on_b, b)
    await on_b.page.wait_for_selector(".banner >> text=shard.0")
    await on_b.assert_clean()

    await screenshot(watched, "dashboard-1280.png")
    await page.set_viewport_size(PHONE)
    await asyncio.sleep(0.5)
    await screenshot(watched, "dashboard-390.png")
    await page.set_viewport_size(DESKTOP)

    # Log out: back to the login form, and the session is gone.
    await page.click(".logout button")
    await page.wait_for_url("**/admin/login")
    await page.goto(str(a.make_url("/admin")))
    assert page.url.endswith("/admin/login")
    await watched.assert_clean()


async def _requests_of(watched: Watched, instance: str) -> str:
    """The "Requests" cell of an instance's row."""
    return str(
        await watched.page.evaluate(
            """(id) => [...document.querySelectorAll('#instances tbody tr')]
                 .find((row) => row.cells[0].textContent.startsWith(id)).cells[7].textContent""",
            instance,
        )
    )


async def _requests_of_moved(watched: Watched, instance: str) -> bool:
    return await _requests_of(watched, instance) != "0/s"


async def _pushed_since(watched: Watched, before: int, count: int) -> bool:
    return await pushes(watched) >= before + count


async def test_a_viewer_sees_the_page_with_every_action_disabled(
    browser: Any, aiohttp_client: Any, make_config: ConfigFactory
) -> None:
    client = await start_admin(aiohttp_client, make_config, ADMIN__PUSH_INTERVAL="0.25")
    watched = await open_page(browser, PHONE)
    await log_in(watched, client, VIEWER)
    page = watched.page
    assert await page.inner_text(".role") == "VIEWER"
    await page.wait_for_selector("#breakers tbody button")
    states = await page.evaluate(
        "[...document.querySelectorAll('#breakers button, [data-dead]')].map((b) => b.disabled)"
    )
    assert len(states) >= 4
    assert all(states)
    await screenshot(watched, "viewer-390.png")
    await watched.assert_clean()


FORMAT_CASES = """async () => {
  const f = await import("/admin/static/format.js");
  return {
    compact: [0, 0.004, 0.25, 3.54, 98.6, 845, 999.7, 1234, 35210, 1.44e6, 2e9].map(f.compact),
    rate: f.rate(1234),
    ms: [0, 0.35, 3.52, 35.2, 850, 1234, 150000].map(f.ms),
    percent: [0, 0.0004, 0.0123, 0.5, 0.987, 0.99996, 1].map(f.percent),
    duration: [42, 185, 7920, 360000].map(f.duration),
    count: f.count(12345),
  };
}"""


async def test_numbers_are_formatted_for_people(
    browser: Any, aiohttp_client: Any, make_config: ConfigFactory
) -> None:
    client = await start_admin(aiohttp_client, make_config)
    watched = await open_page(browser)
    await log_in(watched, client)
    got = await watched.page.evaluate(FORMAT_CASES)
    assert got == {
        "compact": ["0", "<0.01", "0.25", "3.5", "99", "845", "1k", "1.2k", "35k", "1.4M", "2G"],
        "rate": "1.2k/s",
        "ms": ["0", "350 µs", "3.5 ms", "35 ms", "850 ms", "1.2 s", "2.5 min"],
        "percent": ["0 %", "<0.1 %", "1.23 %", "50 %", "98.7 %", ">99.9 %", "100 %"],
        "duration": ["42 s", "3 min 5 s", "2 h 12 min", "4 d 4 h"],
        "count": "12,345",
    }
    await watched.assert_clean()


CHART_CASE = """async () => {
  const c = await import("/admin/static/chart.js");
  const host = document.createElement("div");
  host.style.width = "600px";
  document.querySelector("main").prepend(host);
  const chart = new c.TimeChart(host, { label: "Test chart", format: (v) => `${v} u` });
  const t0 = 1700000000;
  const line = (f) => Array.from({ length: 60 }, (_, i) => [t0 + i, f(i)]);
  chart.update({
    t0, t1: t0 + 59,
    series: [
      { name: "up", color: "#ff0000", values: line((i) => i) },
      { name: "gap", color: "#0000ff", values: line((i) => (i >= 20 && i < 30 ? null : 10)) },
    ],
  });
  const svg = chart.root.querySelector("svg");
  const paths = [...svg.querySelectorAll("path.chart-line")].map((p) => p.getAttribute("d"));
  const labels = [...svg.querySelectorAll(".chart-grid text")].map((t) => t.textContent);
  const box = svg.getBoundingClientRect();
  return { paths, labels, box: [box.left, box.top, box.width, box.height], id: host.id };
}"""


async def test_the_chart_draws_lines_axes_and_a_readout(
    browser: Any, aiohttp_client: Any, make_config: ConfigFactory
) -> None:
    client = await start_admin(aiohttp_client, make_config)
    watched = await open_page(browser)
    await log_in(watched, client)
    page = watched.page
    drawn = await page.evaluate(CHART_CASE)
    up, gap = drawn["paths"]
    assert up.count("M") == 1
    assert up.count("L") == 59
    assert gap.count("M") == 2  # the nulls lift the pen: two pieces
    value_labels = [label for label in drawn["labels"] if label.endswith(" u")]
    assert value_labels == ["0 u", "20 u", "40 u", "60 u"]
    assert any(":" in label for label in drawn["labels"])  # clock ticks on the time axis

    left, top, width, height = drawn["box"]
    await page.mouse.move(left + width - 20, top + height / 2)  # near the newest point
    readout = page.locator("figure.chart").first.locator(".chart-readout")
    await readout.wait_for(state="visible")
    text = await readout.inner_text()
    assert "up" in text
    assert "gap" in text
    assert "10 u" in text  # the gap series' value there

    # Keyboard: focus the chart, Home jumps to the first point.
    await page.mouse.move(0, 0)
    await page.locator("figure.chart").first.focus()
    await page.keyboard.press("Home")
    first = await readout.inner_text()
    assert "0 u" in first
    await page.keyboard.press("ArrowRight")
    assert "1 u" in await readout.inner_text()
    await page.keyboard.press("Escape")
    assert await readout.is_hidden()
    await watched.assert_clean()
