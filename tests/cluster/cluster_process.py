"""Run `python run.py cluster` as a real subprocess: nginx and N instances on free ports."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
from datetime import datetime
from pathlib import Path

import aiohttp

from tests.support.process import KeelProcess


def consecutive_free_ports(count: int) -> int:
    """A base port P such that P … P+count-1 are all free on 127.0.0.1.

    Below Linux's ephemeral range (32768-), where outgoing connections take theirs.
    """
    for base in range(20000 + os.getpid() % 1000 * 10, 32000, 7):
        if all(port_is_free(port) for port in range(base, base + count)):
            return base
    raise AssertionError(f"no {count} consecutive free ports")


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class ClusterProcess(KeelProcess):
    """`run.py cluster` with `toml` as its config file: nginx on `port`, instances above it.

    `start()` returns once the cluster is ready: every instance answered
    `/readyz`, then nginx started.
    """

    def __init__(
        self, tmp_path: Path, toml: str, *, instances: int = 3, env: dict[str, str] | None = None
    ) -> None:
        super().__init__(tmp_path, toml, "cluster", "--instances", str(instances), env=env)
        self.instances = instances
        self.port = consecutive_free_ports(instances + 1)
        self.url = f"http://127.0.0.1:{self.port}"
        self.data_dir = Path(self.env["KEEL_SERVER__DATA_DIR"])

    async def start(self) -> ClusterProcess:
        await super().start()
        await self.wait_for_log("cluster ready in")  # its log says so just after nginx answers
        return self

    @property
    def ports(self) -> list[int]:
        """nginx's port, then each instance's."""
        return [self.port + n for n in range(self.instances + 1)]

    def instance_url(self, number: int) -> str:
        return f"http://127.0.0.1:{self.port + number}"

    @property
    def nginx_dir(self) -> Path:
        return self.data_dir / "cluster" / "nginx"

    async def wait_for_log(self, text: str, *, count: int = 1, timeout: float = 30.0) -> None:
        """Until `text` appears `count` times in the log; fails if the cluster exits first."""

        async def seen() -> bool:
            return self.log().count(text) >= count

        await self.wait_until(seen, what=f"{text!r} x{count} in the log", timeout=timeout)

    def pids(self, number: int) -> list[int]:
        """Every pid instance `number` has had, oldest first."""
        pattern = rf"instance {number} \(pid (\d+)\) starting"
        return [int(pid) for pid in re.findall(pattern, self.log())]

    def nginx_pid(self) -> int:
        match = re.search(r"nginx \(pid (\d+)\) listening", self.log())
        assert match, self.log()
        return int(match.group(1))

    async def stop(self) -> None:
        """SIGTERM and wait; SIGKILL if it hangs (its children then get SIGTERM from Linux)."""
        if self.proc is None or self.proc.returncode is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.proc.wait(), 30)
        except TimeoutError:
            await self.kill()


def logged_at(log: str, text: str) -> float:
    """When the log line holding `text` was written (its asctime, to the millisecond)."""
    match = re.search(rf"^(\S+ \S+) .*{re.escape(text)}", log, re.MULTILINE)
    assert match, log
    return datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()


async def get_json(url: str) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.json(content_type=None)


def pid_alive(pid: int) -> bool:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, 0)
        return True
    return False
