"""One port of the cluster: the listening socket the supervisor holds, and its process.

The socket outlives the processes that serve it. A replacement (`replace`)
starts the new process on it while the old one drains, so the port never
refuses a connection and never resets one: the old process stops accepting
only after `drain_delay`, and whatever arrives after that waits in the accept
queue until the new one takes it.

An instance that dies unexpectedly is different: its port must refuse
connections at once, so that nginx sends them to the other instances instead
of leaving them queued behind a dead process. The socket is closed, and bound
afresh for the restart, after a back-off.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable

from app.cluster.backoff import Backoff
from app.cluster.instance import Instance
from app.core.background import BackgroundTask
from app.core.listener import BACKLOG

log = logging.getLogger("keel.cluster")

Spawner = Callable[[int, int, int], Awaitable[Instance]]


class Slot:
    """Instance `number` on 127.0.0.1:`port`."""

    def __init__(self, number: int, port: int, spawner: Spawner, *, ready_timeout: float) -> None:
        self.number = number
        self.port = port
        self.current: Instance | None = None
        # Processes asked to stop that have not exited yet (the old one of a replacement).
        self.retiring: set[Instance] = set()
        # False while the cluster starts and stops: a death then is not restarted.
        self.supervising = False
        self._spawner = spawner
        self._ready_timeout = ready_timeout
        self._socket: socket.socket | None = None
        self._backoff = Backoff()
        self._recovery: BackgroundTask | None = None
        # One per process, until it has exited and its exit has been dealt with.
        self._watchers: set[BackgroundTask] = set()

    def bind(self) -> None:
        """Listen on the slot's port (the processes accept; we only hold it)."""
        if self._socket is not None:
            return
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", self.port))
            sock.listen(BACKLOG)
        except OSError:
            sock.close()
            raise
        self._socket = sock

    def close_socket(self) -> None:
        """Drop our copy: once the processes close theirs, the port refuses connections."""
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    async def start(self) -> Instance:
        """Start a process on the slot's socket (bound now if it is not)."""
        self.bind()
        assert self._socket is not None
        instance = await self._spawner(self.number, self.port, self._socket.fileno())
        self.current = instance
        watcher = BackgroundTask(f"instance {self.number} watcher", lambda: self._watch(instance))
        self._watchers = {w for w in self._watchers if w.running} | {watcher}
        watcher.start()
        return instance

    async def wait_ready(self) -> bool:
        instance = self.current
        return instance is not None and await instance.wait_ready(within=self._ready_timeout)

    async def replace(self) -> bool:
        """A new process in place of the current one; True once the new one is ready.

        The old one is told to drain first: it keeps accepting and serving for
        `drain_delay` while the new one starts on the same socket. Readiness is
        asked once the old one has exited, when a /readyz 200 on the port can
        only come from the new one.
        """
        await self._stop_recovery()
        old = self.current
        if old is not None:
            self.retire(old)
        await self.start()
        if old is not None:
            await old.wait()
        return await self.wait_ready()

    def retire(self, instance: Instance) -> None:
        """Ask `instance` to drain and exit; it is no longer the slot's process."""
        if self.current is instance:
            self.current = None
        if instance.alive:
            self.retiring.add(instance)
            instance.stop()

    def processes(self) -> list[Instance]:
        """Every live process of this slot: the current one and those draining."""
        live = [*self.retiring, *([self.current] if self.current else [])]
        return [instance for instance in live if instance.alive]

    async def stop(self) -> None:
        """No more restarts; every process asked to drain and exit."""
        self.supervising = False
        await self._stop_recovery()
        self.close_socket()
        for instance in self.processes():
            self.retire(instance)

    async def _watch(self, instance: Instance) -> None:
        await instance.wait()
        self.retiring.discard(instance)
        unexpected = not instance.stopping
        restart = unexpected and self.current is instance and self.supervising
        if restart:
            # The port refuses connections before the death is logged, so a request
            # sent after that line never waits behind nobody (see _restart_after).
            self.close_socket()
        if unexpected:
            log.warning("%s unexpectedly", instance.describe_exit())
        else:
            log.info("%s", instance.describe_exit())
        if unexpected and self.current is instance:
            self.current = None
            if restart:
                self._restart_after(self._backoff.next_delay(instance.uptime()))

    def _restart_after(self, delay: float) -> None:
        # Refuse connections while no process serves the port: nginx then tries
        # the next instance at once rather than queueing requests behind nobody.
        self.close_socket()
        log.warning("instance %d: restarting in %.1fs", self.number, delay)
        self._recovery = BackgroundTask(
            f"instance {self.number} restart", lambda: self._recover(delay)
        )
        self._recovery.start()

    async def _recover(self, delay: float) -> None:
        await asyncio.sleep(delay)
        try:
            await self.start()
        except OSError as exc:
            log.error("instance %d: cannot start: %s", self.number, exc)
            self._restart_after(self._backoff.next_delay(0.0))
            return
        await self.wait_ready()  # a death on the way is seen by its watcher

    async def _stop_recovery(self) -> None:
        recovery, self._recovery = self._recovery, None
        if recovery is not None:
            await recovery.stop()
