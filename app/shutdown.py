"""Serving until a signal, then the drain sequence of DESIGN.md.

SIGTERM or SIGINT:

1. `/readyz` turns 503; wait `server.drain_delay` so load balancers stop sending
   (not for Ctrl-C at a terminal: SIGINT with a TTY on stdin is a developer at a
   laptop, with no load balancer to wait for).
2. Stop listening; in-flight requests get `server.shutdown_timeout` to finish.
3. `on_shutdown` hooks run (plugins close WebSockets, stop consuming).
4. Plugins are torn down in reverse dependency order (aiohttp's cleanup_ctx),
   every failure reported; exit 0, or 1 if a teardown failed.

A second SIGTERM/SIGINT during the drain exits at once with status 1.
SIGHUP re-reads the config file and applies what can change live.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Callable

from aiohttp import web

from app import __version__
from app.application import CONFIG, Role, apply_reload, create_app
from app.config import Config
from app.core.access_log import ACCESS_LOGGER, AccessLogger
from app.core.gc_tuning import tune_for_serving
from app.core.lifecycle import LIFECYCLE, Lifecycle
from app.core.listener import start_site, stop_accepting
from app.errors import ConfigError, KeelError
from app.plugins import read_config

log = logging.getLogger("keel.shutdown")

EXIT_OK = 0
EXIT_FAILED = 1


class SignalWatcher:
    """Turns SIGTERM/SIGINT/SIGHUP into awaitable events on the running loop."""

    def __init__(self, on_second_stop: Callable[[signal.Signals], None]) -> None:
        self._loop = asyncio.get_running_loop()
        self._received: asyncio.Queue[signal.Signals] = asyncio.Queue()
        self._stopping = False
        self._on_second_stop = on_second_stop

    def __enter__(self) -> SignalWatcher:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            self._loop.add_signal_handler(sig, self._handle, sig)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            self._loop.remove_signal_handler(sig)

    def _handle(self, sig: signal.Signals) -> None:
        if sig is signal.SIGHUP:
            if not self._stopping:
                self._received.put_nowait(sig)
            return
        if self._stopping:
            self._on_second_stop(sig)
            return
        self._stopping = True
        self._received.put_nowait(sig)

    async def next(self) -> signal.Signals:
        return await self._received.get()


def drain_delay(sig: signal.Signals, configured: float) -> float:
    """How long /readyz says 503 before the listener closes: `configured`, except for
    Ctrl-C at a terminal (SIGINT with a TTY on stdin), where nobody balances load."""
    if sig is signal.SIGINT and sys.stdin is not None and sys.stdin.isatty():
        return 0.0
    return configured


def exit_now(sig: signal.Signals) -> None:
    """A second stop signal: the operator wants out now, whatever is still running."""
    log.warning("received %s again during the drain: exiting now", sig.name)
    logging.shutdown()
    os._exit(EXIT_FAILED)


def reload_config(app: web.Application, load: Callable[[], Config]) -> None:
    """SIGHUP: re-read the file; keep the running config if the new one is invalid."""
    path = app[CONFIG].current.source
    try:
        new = load()
    except ConfigError as exc:
        log.error("reload refused, config unchanged:\n  %s", "\n  ".join(exc.problems))
        return
    changes = apply_reload(app, new)
    if changes:
        log.info("reloaded %s: %s", path, "; ".join(changes))
    else:
        log.info("reloaded %s: nothing that can change live has changed", path)


def _report(lifecycle: Lifecycle, teardown_errors: list[BaseException]) -> int:
    drain = lifecycle.drain
    lines = [f"drained {drain.drained} of {drain.in_flight_at_start} in-flight request(s)"]
    if drain.cut_off:
        lines.append(
            f"{len(drain.cut_off)} did not finish within shutdown_timeout: "
            + ", ".join(drain.cut_off)
        )
    for error in teardown_errors:
        lines.append(f"teardown error: {error}")
    log.info("shutdown report: %s", "; ".join(lines))
    return EXIT_FAILED if teardown_errors else EXIT_OK


def _teardown_errors(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, web.CleanupError):
        return list(exc.exceptions)
    return [exc]


async def serve(
    config: Config,
    *,
    role: Role = "serve",
    reload: Callable[[], Config] | None = None,
    listen_fd: int | None = None,
) -> int:
    """Serve `config` until a stop signal; return the process exit status.

    `reload` re-reads the configuration on SIGHUP (the same file and the same
    overrides as at startup); by default the file `config` came from.
    `listen_fd` is an inherited listening socket to serve on instead of
    binding host:port (app/core/listener.py).
    """
    reload = reload or (lambda: read_config(config.source))
    app = create_app(config, role=role)
    lifecycle = app[LIFECYCLE]
    host = config.server.host
    port = config.server.port if role == "serve" else config.worker.port
    runner = web.AppRunner(
        app,
        handle_signals=False,
        access_log_class=AccessLogger,
        access_log=ACCESS_LOGGER if config.logging.access_log else None,
        shutdown_timeout=config.server.shutdown_timeout,
    )
    teardown_errors: list[BaseException] = []
    with SignalWatcher(exit_now) as signals:
        try:
            await runner.setup()
            tune_for_serving()  # plugins are up: what startup made lives as long as we do
            site, host, port = await start_site(runner, host, port, listen_fd)
            log.info(
                "Keel %s %s on http://%s:%d (pid %d, %s loop) plugins: %s",
                __version__,
                "serving" if role == "serve" else "worker health/metrics",
                host if ":" not in host else f"[{host}]",
                port,
                os.getpid(),
                type(asyncio.get_running_loop()).__module__.split(".")[0],
                ", ".join(config.plugins.enabled) or "none",
            )
            while (sig := await signals.next()) is signal.SIGHUP:
                reload_config(app, reload)
            lifecycle.start_draining()
            delay = drain_delay(sig, config.server.drain_delay)
            log.info(
                "received %s: draining (/readyz answers 503) for %.1fs%s, %d request(s) in"
                " flight; send it again to exit now",
                sig.name,
                delay,
                " (Ctrl-C at a terminal: no load balancer to wait for)"
                if delay != config.server.drain_delay
                else "",
                len(lifecycle.in_flight),
            )
            await asyncio.sleep(delay)
            log.info(
                "closing the listener; in-flight requests have %.1fs to finish",
                config.server.shutdown_timeout,
            )
            await stop_accepting(site)
        finally:
            lifecycle.start_draining()
            try:
                await runner.cleanup()
            except (KeelError, web.CleanupError) as exc:
                teardown_errors.extend(_teardown_errors(exc))
    return _report(lifecycle, teardown_errors)
