"""A private `redis-server` on a free port that a test can pause, resume and restart.

Faults are injected here, never on the machine's shared Redis: `pause()` sends
SIGSTOP, so the server keeps its TCP connections open but answers nothing —
a partition as clients see it, not a crash — and `resume()` sends SIGCONT.
`restart()` stops it and starts a new, empty one on the same port (it keeps
nothing: no RDB, no AOF), as a crashed Redis comes back; `restart(kill=True)`
stops it with SIGKILL, as a crash does.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path


class PrivateRedis:
    def __init__(self, workdir: Path, port: int) -> None:
        self.port = port
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.paused = False
        self._workdir = workdir
        self._start()

    def _start(self) -> None:
        workdir = self._workdir
        self._process = subprocess.Popen(
            [
                "redis-server",
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "no",
                "--dir", str(workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self._wait_until_listening()

    def _wait_until_listening(self) -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"private redis-server did not listen on {self.port}")

    def pause(self) -> None:
        os.kill(self._process.pid, signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        os.kill(self._process.pid, signal.SIGCONT)
        self.paused = False

    def restart(self, *, kill: bool = False) -> None:
        if kill:
            self.kill()
        else:
            self.stop()
        self._start()

    def kill(self) -> None:
        if self.paused:
            self.resume()
        self._process.kill()
        self._process.wait()

    def stop(self) -> None:
        if self.paused:
            self.resume()
        self._process.terminate()
        try:
            self._process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
