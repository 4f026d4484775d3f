"""This process's life: its identity, its phase and the requests it is serving.

`/readyz` reads the phase, the drain sequence flips it, and the request
tracker counts what is in flight so that shutdown can report what it drained
and what it had to cut off.
"""

from __future__ import annotations

import enum
import os
import secrets
import socket
import time
from dataclasses import dataclass, field

from aiohttp import web

from app import __version__


class Phase(enum.Enum):
    STARTING = "starting"
    RUNNING = "running"
    DRAINING = "draining"
    STOPPED = "stopped"


@dataclass(frozen=True)
class Instance:
    """Who this process is: shown on the dashboard, used in the Redis heartbeat."""

    id: str = field(
        default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
    )
    version: str = __version__
    pid: int = field(default_factory=os.getpid)
    started_at: float = field(default_factory=time.time)
    started_monotonic: float = field(default_factory=time.monotonic)

    def uptime(self) -> float:
        return time.monotonic() - self.started_monotonic


@dataclass
class DrainReport:
    """What the drain saw: requests in flight when it began, and those cut off."""

    in_flight_at_start: int = 0
    cut_off: list[str] = field(default_factory=list)

    @property
    def drained(self) -> int:
        return self.in_flight_at_start - len(self.cut_off)


class Lifecycle:
    """Phase plus in-flight request tracking; one per application."""

    def __init__(self, role: str = "serve") -> None:
        self.role = role
        self.instance = Instance()
        self.phase = Phase.STARTING
        # id(request) -> "METHOD path": requests are unhashable mappings.
        self.in_flight: dict[int, str] = {}
        self.drain = DrainReport()

    def start_draining(self) -> None:
        if self.phase is not Phase.DRAINING:
            self.phase = Phase.DRAINING
            self.drain.in_flight_at_start = len(self.in_flight)

    def untrack(self, request: web.BaseRequest) -> None:
        """`request` became a long-lived connection (a WebSocket): stop counting it
        as in flight. Its plugin closes it during the drain, so it neither pins the
        drain nor counts in the drain report or `keel_http_requests_in_flight`."""
        self.in_flight.pop(id(request), None)

    def cancelled(self, key: int) -> None:
        """The request tracked under `key` was cancelled: a drain cut it off, unless running."""
        if self.phase is not Phase.RUNNING and key in self.in_flight:
            self.drain.cut_off.append(self.in_flight[key])


LIFECYCLE = web.AppKey("keel.lifecycle", Lifecycle)
