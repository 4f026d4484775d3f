"""Debian's chromium, driven by playwright (never a browser of playwright's own download)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from tests.support.services import service_missing

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def chromium() -> str:
    """The browser's path; fails under CI (skips elsewhere) when it is not installed."""
    if not Path(CHROMIUM).exists():
        service_missing("chromium (Debian package chromium)")
    return CHROMIUM


@contextlib.asynccontextmanager
async def open_browser() -> AsyncIterator[Any]:
    """A headless chromium (`playwright.async_api.Browser`), closed on exit."""
    executable = chromium()
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=executable, args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield browser
        finally:
            await browser.close()
