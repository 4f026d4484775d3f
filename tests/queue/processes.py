"""`run.py serve` and `run.py worker` as real processes sharing one data_dir (SQLite
shards, the embedded queue), each with its own config and log file."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

from tests.support.process import KeelProcess
from tests.support.services import REPO


class QueueProcess(KeelProcess):
    def __init__(self, tmp_path: Path, name: str, role: str, env: dict[str, str]) -> None:
        super().__init__(tmp_path, "", env=env)
        self.role = role
        self.config_path = tmp_path / f"{name}.toml"
        self.config_path.write_text("")
        self.log_path = tmp_path / f"{name}.log"
        if role == "worker":
            self.env["KEEL_WORKER__PORT"] = str(self.port)

    async def start(self) -> QueueProcess:
        command = [sys.executable, "run.py", "--config", str(self.config_path), self.role]
        if self.role == "serve":
            command += ["--port", str(self.port)]
        with self.log_path.open("ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                *command, cwd=REPO, env=self.env, stdout=log, stderr=asyncio.subprocess.STDOUT
            )
        await self.wait_until(lambda: self.answers("/readyz"), what=f"{self.role} to be ready")
        return self

    async def post_job(self, task: str, **body: Any) -> dict[str, Any]:
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"{self.url}/api/jobs", json={"task": task, **body}) as response,
        ):
            assert response.status == 202, await response.text()
            job: dict[str, Any] = await response.json()
            return job

    async def job(self, job_id: str) -> dict[str, Any]:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{self.url}/api/jobs/{job_id}") as response,
        ):
            assert response.status == 200, await response.text()
            job: dict[str, Any] = await response.json()
            return job

    async def wait_for_job(
        self, job_id: str, *statuses: str, timeout: float = 15.0
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        job: dict[str, Any] = {}
        while time.monotonic() < deadline:
            job = await self.job(job_id)
            if job["status"] in statuses:
                return job
            await asyncio.sleep(0.05)
        raise AssertionError(f"job {job_id} is {job.get('status')}, not {statuses}:\n{self.log()}")
