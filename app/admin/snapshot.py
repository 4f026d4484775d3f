"""This instance's snapshot: who it is, whether it is ready, and every plugin's state.

`{"id", "version", "pid", "host", "role", "started_at", "uptime", "phase",
"ready", "in_flight", "plugins": {name: state()}, "degraded": [...]}` — the
page adds the per-route series. Everything goes through the `Redactor` before
it leaves the process. The CPU spent building snapshots is counted (thread
time of the event loop), so the cost of the dashboard is known: the admin
plugin's own state reports it.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from app.admin.degraded import DegradedTracker, find_degraded
from app.admin.redact import Redactor
from app.core.health import ReadinessCheck, readiness_report
from app.core.lifecycle import Lifecycle, Phase

log = logging.getLogger("keel.admin")


class Reports(ReadinessCheck, Protocol):
    """What a snapshot asks of each plugin: its readiness and its `state()`."""

    def state(self) -> dict[str, Any]: ...


class SnapshotCost:
    """How many snapshots were built and the CPU they took."""

    def __init__(self) -> None:
        self.count = 0
        self.cpu_seconds = 0.0

    def as_dict(self) -> dict[str, Any]:
        mean = self.cpu_seconds / self.count if self.count else None
        return {
            "snapshots": self.count,
            "cpu_ms_per_snapshot": round(mean * 1000, 3) if mean is not None else None,
        }


class InstanceReporter:
    def __init__(
        self,
        lifecycle: Lifecycle,
        plugins: Callable[[], Sequence[Reports]],
        redactor: Redactor,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.lifecycle = lifecycle
        self.plugins = plugins
        self.redactor = redactor
        self.clock = clock
        self.host = socket.gethostname()
        self.degraded = DegradedTracker(clock)
        self.cost = SnapshotCost()
        self._failed: set[str] = set()

    async def snapshot(self) -> dict[str, Any]:
        plugins = self.plugins()
        phase = self.lifecycle.phase
        _, readiness = await readiness_report(plugins, phase)
        started = time.thread_time()
        states = {plugin.name: self._state(plugin) for plugin in plugins}
        instance = self.lifecycle.instance
        snapshot = {
            "id": instance.id,
            "version": instance.version,
            "pid": instance.pid,
            "host": self.host,
            "role": self.lifecycle.role,
            "started_at": instance.started_at,
            "uptime": round(instance.uptime(), 1),
            "phase": phase.value,
            "ready": phase is Phase.RUNNING and readiness["status"] in ("ready", "degraded"),
            "status": readiness["status"],
            "in_flight": len(self.lifecycle.in_flight),
            "reported_at": self.clock(),
            "plugins": states,
            "readiness": readiness["plugins"],
            "degraded": self.degraded.update(find_degraded(states, readiness["plugins"])),
        }
        redacted: dict[str, Any] = self.redactor(snapshot)
        self.cost.count += 1
        self.cost.cpu_seconds += time.thread_time() - started
        return redacted

    def _state(self, plugin: Reports) -> Any:
        try:
            state = plugin.state()
        except Exception as exc:
            if plugin.name not in self._failed:
                log.exception("plugin %s: state() failed", plugin.name)
                self._failed.add(plugin.name)
            return {"error": f"state() failed: {type(exc).__name__}"}
        self._failed.discard(plugin.name)
        return state
