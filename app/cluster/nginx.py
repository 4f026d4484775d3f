"""nginx as the cluster runs it: a directory of its own, the current user, the foreground.

Everything lives under `<data_dir>/cluster/nginx/`: a copy of
deploy/nginx/nginx.conf, the two include files rendered beside it (nginx
resolves a relative `include` against the directory of the main config
file), the pid file, `error.log`, `access.log` (nginx.conf logs to
/dev/stdout, which is this file) and the temp directories. nginx is started
with that directory as its prefix (-p), the error log given with -e and the
rest with -g, so it needs nothing of the system's: no root, no /var/lib/nginx.
"""

from __future__ import annotations

import asyncio
import logging
import os
import pwd
import shutil
import signal
import time
from pathlib import Path

from app.cluster.child import describe_exit, relay, spawn
from app.cluster.nginx_files import LISTEN_FILE, NGINX_CONF, TEMP_PATHS, UPSTREAM_FILE
from app.errors import StartupError

log = logging.getLogger("keel.cluster")

START_TIMEOUT = 10.0
# nginx.conf's worker_shutdown_timeout, and a margin.
QUIT_TIMEOUT = 15.0
KILL_TIMEOUT = 5.0
ERROR_LINES = 5


class Nginx:
    """One nginx master process serving from `directory`."""

    def __init__(self, binary: str, directory: Path) -> None:
        self.binary = binary
        self.directory = directory
        self.conf = directory / "nginx.conf"
        self.error_log = directory / "error.log"
        self.access_log = directory / "access.log"
        self.pid_file = directory / "nginx.pid"
        self.temp = directory / "temp"
        self.process: asyncio.subprocess.Process | None = None
        self._output: asyncio.Task[None] | None = None
        self.stopping = False

    def write_files(self, upstream: str, listen: str) -> None:
        """nginx.conf (copied unchanged) and the two files it includes, rendered."""
        self.temp.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(NGINX_CONF, self.conf)
        (self.directory / UPSTREAM_FILE).write_text(upstream)
        (self.directory / LISTEN_FILE).write_text(listen)
        for name in TEMP_PATHS:  # nginx makes the last level itself, not the parents
            (self.temp / name).mkdir(exist_ok=True)

    def argv(self, *options: str, error_log: str | None = None) -> list[str]:
        globals_ = f"daemon off; pid {self.pid_file};"
        if os.geteuid() == 0:
            # As root, nginx would switch its workers to `nobody`; we want the current user.
            globals_ += f" user {pwd.getpwuid(0).pw_name};"
        return [
            self.binary,
            "-p",
            f"{self.directory}/",
            "-c",
            str(self.conf),
            "-e",
            error_log or str(self.error_log),
            "-g",
            globals_,
            *options,
        ]

    async def check(self) -> None:
        """`nginx -t`: a StartupError with nginx's own words if the config is refused."""
        process = await spawn(
            self.argv("-t", "-q", error_log="stderr"),
            env=os.environ,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        _, errors = await process.communicate()
        if process.returncode != 0:
            lines = errors.decode(errors="replace").strip().splitlines() or ["(no output)"]
            raise StartupError([f"nginx -t refused {self.conf}: {line}" for line in lines])

    async def start(self, host: str, port: int) -> None:
        """Start nginx; return once it accepts connections on `host:port`."""
        with self.access_log.open("ab") as access:
            self.process = await spawn(
                self.argv(),
                env=os.environ,
                stdout=access,
                stderr=asyncio.subprocess.PIPE,
            )
        self._output = asyncio.create_task(relay(self.process.stderr, "nginx  | "))
        probe_host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.returncode is not None:
                break
            try:
                _, writer = await asyncio.open_connection(probe_host, port)
            except OSError:
                await asyncio.sleep(0.05)
                continue
            writer.close()
            await writer.wait_closed()
            log.info("nginx (pid %d) listening on %s:%d", self.process.pid, host, port)
            return
        await self.stop()
        raise StartupError([f"nginx did not start; {self.error_log} says: {self.last_errors()}"])

    def last_errors(self) -> str:
        try:
            lines = self.error_log.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "(nothing)"
        return " | ".join(lines[-ERROR_LINES:]) or "(nothing)"

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.returncode is None

    async def wait(self) -> int:
        assert self.process is not None
        assert self._output is not None
        status = await self.process.wait()
        await asyncio.shield(self._output)  # a waiter's cancellation must not end the relay
        return status

    async def stop(self) -> int:
        """A graceful stop (SIGQUIT: open requests finish), forced if it takes too long."""
        self.stopping = True
        if self.process is None:
            return 0
        for sig, timeout in (
            (signal.SIGQUIT, QUIT_TIMEOUT),
            (signal.SIGTERM, KILL_TIMEOUT),
            (signal.SIGKILL, None),
        ):
            if self.process.returncode is not None:
                break
            self.process.send_signal(sig)
            try:
                await asyncio.wait_for(asyncio.shield(self.process.wait()), timeout)
            except TimeoutError:
                log.warning("nginx did not stop within %.0fs of %s", timeout, sig.name)
        status = await self.wait()
        log.info("nginx (pid %d) %s", self.process.pid, describe_exit(status))
        return status
