"""One `run.py serve` process of the cluster, serving on a socket it inherited."""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Mapping, Sequence

import aiohttp

from app.cluster.child import describe_exit, relay, spawn

log = logging.getLogger("keel.cluster")

PROBE_INTERVAL = 0.1
# One /readyz probe; a probe sent while no process accepts on the port waits
# in the accept queue, so it is given up on and sent again.
PROBE_TIMEOUT = 2.0


class Instance:
    """One process: `number` names its slot (and port) in the cluster."""

    def __init__(
        self,
        number: int,
        port: int,
        process: asyncio.subprocess.Process,
        output: asyncio.Task[None],
    ) -> None:
        self.number = number
        self.port = port
        self.process = process
        self.started = time.monotonic()
        self.ready_at: float | None = None
        # Set when the supervisor stops it: its exit is then no accident.
        self.stopping = False
        self._output = output

    @classmethod
    async def spawn(
        cls,
        number: int,
        port: int,
        *,
        argv: Sequence[str],
        env: Mapping[str, str],
        listen_fd: int,
        prefix_output: bool,
    ) -> Instance:
        """Start `argv` (a `run.py serve` command line) with `--listen-fd` appended."""
        pipe = asyncio.subprocess.PIPE if prefix_output else None
        process = await spawn(
            [*argv, "--listen-fd", str(listen_fd)],
            env=env,
            stdout=pipe,
            stderr=asyncio.subprocess.STDOUT if prefix_output else None,
            pass_fds=(listen_fd,),
        )
        output = asyncio.create_task(relay(process.stdout, f"keel-{number} | "))
        instance = cls(number, port, process, output)
        log.info("%s starting on 127.0.0.1:%d", instance, port)
        return instance

    def __str__(self) -> str:
        return f"instance {self.number} (pid {self.process.pid})"

    @property
    def alive(self) -> bool:
        return self.process.returncode is None

    def uptime(self) -> float:
        return time.monotonic() - self.started

    async def wait_ready(self, within: float) -> bool:
        """True once `/readyz` on its port answers 200; False if it exits or `within` s pass.

        While an old process on the same port drains, its `/readyz` answers
        503, so a 200 comes from this one.
        """
        url = f"http://127.0.0.1:{self.port}/readyz"
        deadline = time.monotonic() + within
        connector = aiohttp.TCPConnector(force_close=True)
        probe_timeout = aiohttp.ClientTimeout(total=PROBE_TIMEOUT)
        async with aiohttp.ClientSession(connector=connector, timeout=probe_timeout) as session:
            while self.alive and time.monotonic() < deadline:
                try:
                    async with session.get(url) as response:
                        if response.status == 200:
                            self.ready_at = time.monotonic()
                            log.info("%s ready in %.1fs", self, self.ready_at - self.started)
                            return True
                except (aiohttp.ClientError, TimeoutError):
                    pass  # not accepting yet, or still the old process's queue
                await asyncio.sleep(PROBE_INTERVAL)
        if self.alive:
            log.error("%s not ready after %.0fs", self, within)
        return False

    def signal(self, sig: signal.Signals) -> None:
        if self.alive:
            self.process.send_signal(sig)

    def stop(self) -> None:
        """SIGTERM: drain (while still accepting for `drain_delay`), then exit."""
        self.stopping = True
        self.signal(signal.SIGTERM)

    async def wait(self) -> int:
        """Its exit status once it has exited and its output is relayed."""
        status = await self.process.wait()
        await asyncio.shield(self._output)  # a waiter's cancellation must not end the relay
        return status

    def describe_exit(self) -> str:
        assert self.process.returncode is not None
        return f"{self} {describe_exit(self.process.returncode)}"
