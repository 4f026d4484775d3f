"""The cluster's life: start everything, answer signals, stop everything in order.

Start: the ports are bound, nginx's files written and checked (`nginx -t`),
every instance started and waited for (`/readyz` 200), then nginx.

SIGHUP: a rolling restart. One instance at a time is replaced (slot.py): the
old one drains while the new one starts on the same socket; the next goes
only once the new one answers `/readyz` 200 and the old one has exited. An
instance that does not come back stops the rolling restart (it is restarted
with back-off like any dead instance; the others keep serving).

SIGTERM/SIGINT: every instance drains and exits, then nginx stops gracefully;
exit 0 (1 if one of them failed). A second SIGTERM/SIGINT hurries them: each
instance gets its second signal (it exits at once) and nginx a fast stop.

An instance that dies unexpectedly is restarted, after a back-off that grows
while it keeps dying. nginx dying is not: the cluster then stops, exit 1.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from app.admin.settings import AdminSettings
from app.cluster.child import describe_exit
from app.cluster.instance import Instance
from app.cluster.nginx import Nginx
from app.cluster.nginx_files import render_listen, render_upstream
from app.cluster.preflight import ClusterOptions, find_nginx, refusals, warnings
from app.cluster.slot import Slot
from app.config import Config
from app.core.background import BackgroundTask, background
from app.errors import ConfigError, StartupError

log = logging.getLogger("keel.cluster")

RUN_PY = Path(__file__).resolve().parents[2] / "run.py"
READY_TIMEOUT = 60.0
# Beyond drain_delay + shutdown_timeout, what an instance may take to tear down.
EXIT_MARGIN = 15.0
EXIT_OK = 0
EXIT_FAILED = 1


@dataclass(frozen=True)
class Stop:
    """The supervisor is to stop: a signal, or nginx died."""

    reason: str
    status: int = EXIT_OK


class Cluster:
    """N instances on ports P+1 … P+N behind nginx on `[server] host`:P."""

    def __init__(self, config: Config, options: ClusterOptions, nginx_binary: str) -> None:
        self.config = config
        self.options = options
        server = config.server
        self.ports = [server.port + n for n in range(1, options.instances + 1)]
        self.nginx = Nginx(nginx_binary, server.data_path / "cluster" / "nginx")
        self.slots = [
            Slot(number, port, self._spawn, ready_timeout=READY_TIMEOUT)
            for number, port in enumerate(self.ports, start=1)
        ]
        self._env = self._instance_env()
        self._events: asyncio.Queue[Stop | signal.Signals] = asyncio.Queue()
        self._stopping = False
        self._rolling = BackgroundTask("rolling restart", self._replace_each)

    def _instance_env(self) -> dict[str, str]:
        env = {**os.environ, "KEEL_SERVER__HOST": "127.0.0.1"}
        admin = self.config.settings(AdminSettings)
        if "admin" in self.config.plugins.enabled and not admin.token:
            # One token for every instance: a login must work whichever one answers.
            env["KEEL_ADMIN__TOKEN"] = secrets.token_urlsafe(24)
            print(f"admin token (every instance): {env['KEEL_ADMIN__TOKEN']}", file=sys.stderr)
        return env

    async def _spawn(self, number: int, port: int, listen_fd: int) -> Instance:
        argv = [sys.executable, str(RUN_PY)]
        if self.config.source is not None:
            argv += ["--config", str(self.config.source)]
        return await Instance.spawn(
            number,
            port,
            argv=[*argv, "serve"],
            env={**self._env, "KEEL_SERVER__PORT": str(port)},
            listen_fd=listen_fd,
            prefix_output=self.config.logging.format == "text",
        )

    # -- signals ---------------------------------------------------------------

    def _on_signal(self, sig: signal.Signals) -> None:
        if sig is signal.SIGHUP:
            self._events.put_nowait(sig)
        elif not self._stopping:
            self._stopping = True
            self._events.put_nowait(Stop(f"received {sig.name}"))
        else:
            self._hurry(sig)

    def _hurry(self, sig: signal.Signals) -> None:
        log.warning("received %s again: stopping every instance and nginx now", sig.name)
        for slot in self.slots:
            for instance in slot.processes():
                instance.signal(signal.SIGTERM)  # their second: serve exits at once
        if self.nginx.alive and self.nginx.process is not None:
            self.nginx.process.send_signal(signal.SIGTERM)  # nginx's fast shutdown

    # -- the life --------------------------------------------------------------

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        handled = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
        for sig in handled:
            loop.add_signal_handler(sig, self._on_signal, sig)
        try:
            try:
                stop = await self._start_unless_stopped() or await self._serve()
            except BaseException:
                await self._stop_everything()
                raise
            log.info("stopping the cluster: %s", stop.reason)
            return max(stop.status, await self._stop_everything())
        finally:
            for sig in handled:
                loop.remove_signal_handler(sig)

    async def _start_unless_stopped(self) -> Stop | None:
        """Start everything; a Stop if a signal came first (startup is then abandoned)."""
        starting = asyncio.create_task(self._start())
        stopped = asyncio.create_task(self._next_stop())
        done, _ = await asyncio.wait({starting, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if starting in done:
            stopped.cancel()
            starting.result()  # a StartupError goes up from here
            return None
        starting.cancel()
        await asyncio.gather(starting, return_exceptions=True)
        return stopped.result()

    async def _next_stop(self) -> Stop:
        while not isinstance(event := await self._events.get(), Stop):
            log.info("received %s while starting: ignored", event.name)
        return event

    async def _start(self) -> None:
        started = time.monotonic()
        server = self.config.server
        for line in warnings(self.config):
            log.warning("%s", line)
        for slot in self.slots:
            try:
                slot.bind()
            except OSError as exc:
                raise StartupError(
                    [f"instance {slot.number}: cannot listen on 127.0.0.1:{slot.port}: {exc}"]
                ) from exc
        self.nginx.write_files(
            render_upstream(self.ports, drain_delay=server.drain_delay, temp_root=self.nginx.temp),
            render_listen(server.host, server.port, client_max_size=server.client_max_size),
        )
        await self.nginx.check()
        for slot in self.slots:
            await slot.start()
        ready = await asyncio.gather(*(slot.wait_ready() for slot in self.slots))
        if not all(ready):
            failed = [str(s.number) for s, ok in zip(self.slots, ready, strict=True) if not ok]
            raise StartupError([f"instance(s) {', '.join(failed)} did not become ready"])
        await self.nginx.start(server.host, server.port)
        for slot in self.slots:
            slot.supervising = True
        log.info(
            "cluster ready in %.1fs: http://%s:%d -> %d instance(s) on 127.0.0.1:%d-%d;"
            " nginx logs in %s; SIGHUP: rolling restart",
            time.monotonic() - started,
            server.host,
            server.port,
            len(self.slots),
            self.ports[0],
            self.ports[-1],
            self.nginx.directory,
        )

    async def _serve(self) -> Stop:
        async with background("nginx watcher", self._watch_nginx):
            try:
                while True:
                    event = await self._events.get()
                    if isinstance(event, Stop):
                        return event
                    if self._rolling.running:
                        log.info("received SIGHUP during a rolling restart: ignored")
                    else:
                        self._rolling.start()
            finally:
                await self._rolling.stop()

    async def _watch_nginx(self) -> None:
        status = await self.nginx.wait()
        if not self.nginx.stopping:
            log.error("nginx %s; last errors: %s", describe_exit(status), self.nginx.last_errors())
            self._events.put_nowait(Stop("nginx died", EXIT_FAILED))

    async def _replace_each(self) -> None:
        started = time.monotonic()
        log.info("rolling restart of %d instance(s)", len(self.slots))
        for slot in self.slots:
            log.info("rolling restart: instance %d of %d", slot.number, len(self.slots))
            try:
                replaced = await slot.replace()
            except OSError as exc:  # its port could not be bound again
                log.error("rolling restart stopped: instance %d: %s", slot.number, exc)
                return
            if not replaced:
                log.error(
                    "rolling restart stopped: instance %d did not come back"
                    " (it is restarted with back-off; the others keep serving)",
                    slot.number,
                )
                return
        log.info("rolling restart done in %.1fs", time.monotonic() - started)

    async def _stop_everything(self) -> int:
        """Every instance drains and exits, then nginx; EXIT_FAILED if any did not exit 0."""
        self._stopping = True
        for slot in self.slots:
            await slot.stop()
        instances = [instance for slot in self.slots for instance in slot.retiring]
        server = self.config.server
        timeout = server.drain_delay + server.shutdown_timeout + EXIT_MARGIN
        statuses = await asyncio.gather(*(_exit_within(i, timeout) for i in instances))
        status = EXIT_OK if all(code == 0 for code in statuses) else EXIT_FAILED
        if self.nginx.process is not None and await self.nginx.stop() != 0:
            status = EXIT_FAILED
        log.info("cluster stopped")
        return status


async def _exit_within(instance: Instance, seconds: float) -> int:
    try:
        return await asyncio.wait_for(asyncio.shield(instance.wait()), seconds)
    except TimeoutError:
        log.error("%s did not exit within %.0fs of SIGTERM: killing it", instance, seconds)
        instance.signal(signal.SIGKILL)
        return await instance.wait()


async def cluster_command(config: Config, options: ClusterOptions) -> int:
    """`run.py cluster`: refuse (ConfigError, exit 2) or run until stopped."""
    problems = refusals(config, options)
    if problems:
        raise ConfigError(problems)
    binary = find_nginx(options.nginx)
    assert binary is not None  # refusals() checked
    return await Cluster(config, options, binary).run()
