"""Run `python run.py` as a real subprocess for tests that need signals."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

import aiohttp

from tests.support.services import REPO, free_port


class KeelProcess:
    """One `run.py` process on a free port, its log in a file the test can read."""

    def __init__(self, tmp_path: Path, toml: str, *args: str, env: dict[str, str] | None = None):
        self.port = free_port()
        self.config_path = tmp_path / "config.toml"
        self.config_path.write_text(toml)
        self.log_path = tmp_path / "keel.log"
        self.args = args
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("KEEL_")}
        self.env.update(env or {})
        self.env["KEEL_SERVER__DATA_DIR"] = str(tmp_path / "data")
        self.proc: asyncio.subprocess.Process | None = None
        self.url = f"http://127.0.0.1:{self.port}"

    async def start(self) -> KeelProcess:
        log = self.log_path.open("wb")
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "run.py",
            "--config",
            str(self.config_path),
            *self.args,
            "--port",
            str(self.port),
            cwd=REPO,
            env=self.env,
            stdout=log,
            stderr=asyncio.subprocess.STDOUT,
        )
        log.close()
        await self.wait_until(lambda: self.answers("/healthz"), what="/healthz to answer")
        return self

    async def answers(self, path: str) -> bool:
        try:
            async with aiohttp.ClientSession() as session, session.get(self.url + path) as r:
                return r.status == 200
        except aiohttp.ClientError:
            return False

    async def wait_until(self, condition, *, what: str, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.returncode is not None:
                raise AssertionError(f"keel exited ({self.proc.returncode}):\n{self.log()}")
            if await condition():
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}:\n{self.log()}")

    async def operations(self) -> int:
        """How many operations its OpenAPI document lists."""
        async with (
            aiohttp.ClientSession() as session,
            session.get(self.url + "/api/openapi.json") as r,
        ):
            document = await r.json()
        methods = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}
        return sum(1 for item in document["paths"].values() for method in item if method in methods)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    async def exit_status(self, timeout: float = 15.0) -> int:
        assert self.proc is not None
        try:
            return await asyncio.wait_for(self.proc.wait(), timeout)
        except TimeoutError:
            raise AssertionError(f"keel did not exit within {timeout}s:\n{self.log()}") from None

    async def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
