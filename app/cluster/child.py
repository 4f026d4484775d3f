"""Starting the supervisor's children: their own session, and they die with it.

Each child (an instance, nginx) gets a session of its own, so a Ctrl-C in the
terminal reaches only the supervisor, which stops the children in order
(instances drain first, nginx last) instead of all of them at once. On Linux a
child is also sent SIGTERM if the supervisor dies without stopping it (killed
with SIGKILL, say), so no instance or nginx is left holding a port.

A child's output goes through the supervisor, each line prefixed with the
child's name ("keel-2 | ..."), as docker compose does: interleaved logs of
several processes are unreadable otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import IO, Any

PR_SET_PDEATHSIG = 1
LINE_LIMIT = 1 << 20


def _die_with_parent() -> Callable[[], None] | None:
    """A `preexec_fn` asking Linux to SIGTERM the child when its parent dies."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    parent = os.getpid()

    def preexec() -> None:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os.kill(os.getpid(), signal.SIGTERM)

    return preexec


async def spawn(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    stdout: int | IO[Any] | None,
    stderr: int | IO[Any] | None,
    pass_fds: Sequence[int] = (),
) -> asyncio.subprocess.Process:
    """Start `argv` in a session of its own; stdin is /dev/null."""
    return await asyncio.create_subprocess_exec(
        *argv,
        env=dict(env),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=stdout,
        stderr=stderr,
        pass_fds=tuple(pass_fds),
        start_new_session=True,
        preexec_fn=_die_with_parent(),
        limit=LINE_LIMIT,
    )


async def relay(stream: asyncio.StreamReader | None, prefix: str) -> None:
    """Copy `stream` to our stderr line by line, each line after `prefix`, until EOF."""
    if stream is None:
        return
    sink = sys.stderr.buffer
    head = prefix.encode()
    while True:
        try:
            line = await stream.readline()
        except ValueError:  # a line longer than LINE_LIMIT: pass on what is there
            line = await stream.read(LINE_LIMIT)
        if not line:
            return
        with contextlib.suppress(OSError):  # our stderr is gone: keep draining the pipe
            sink.write(head + line if line.endswith(b"\n") else head + line + b"\n")
            sink.flush()


def describe_exit(returncode: int) -> str:
    """'exited with status 0', 'was killed by SIGKILL'."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"was killed by {name}"
    return f"exited with status {returncode}"
