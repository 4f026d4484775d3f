"""`GET /healthz` (liveness) and `GET /readyz` (readiness, per plugin)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from aiohttp import web

from app.core.json_codec import json_response
from app.core.lifecycle import LIFECYCLE, Phase

# A readiness probe must answer quickly even when a dependency hangs.
CHECK_TIMEOUT = 2.0

ReadinessStatus = Literal["ok", "degraded", "down"]


@dataclass(frozen=True, slots=True)
class Readiness:
    """A plugin's answer to "may this instance take traffic?"."""

    status: ReadinessStatus = "ok"
    detail: str = ""


READY = Readiness()


class ReadinessCheck(Protocol):
    """What `/readyz` asks: every plugin is one."""

    @property
    def name(self) -> str: ...

    async def readiness(self) -> Readiness: ...


CHECKS: web.AppKey[Sequence[ReadinessCheck]] = web.AppKey("keel.readiness_checks")

_HEALTHY = b'{"status":"ok"}'


async def healthz(request: web.Request) -> web.Response:
    """200 while the process runs: nothing here may depend on anything else."""
    return web.Response(body=_HEALTHY, content_type="application/json")


async def _check(plugin: ReadinessCheck) -> Readiness:
    try:
        async with asyncio.timeout(CHECK_TIMEOUT):
            return await plugin.readiness()
    except TimeoutError:
        return Readiness("down", f"readiness check took over {CHECK_TIMEOUT}s")


async def readiness_report(
    plugins: Sequence[ReadinessCheck], phase: Phase
) -> tuple[int, dict[str, Any]]:
    """(status code, body) of `/readyz` for the given plugins and phase."""
    results = await asyncio.gather(*(_check(p) for p in plugins))
    by_name = {
        p.name: {"status": r.status, "detail": r.detail}
        for p, r in zip(plugins, results, strict=True)
    }
    statuses = {r.status for r in results}
    if phase is not Phase.RUNNING:
        status = phase.value
    elif "down" in statuses:
        status = "unavailable"
    elif "degraded" in statuses:
        status = "degraded"
    else:
        status = "ready"
    code = 200 if status in ("ready", "degraded") else 503
    return code, {"status": status, "plugins": by_name}


async def readyz(request: web.Request) -> web.Response:
    """200 when this instance should get traffic; 503 while starting, draining or down."""
    code, body = await readiness_report(request.app[CHECKS], request.app[LIFECYCLE].phase)
    return json_response(body, status=code)


def add_routes(app: web.Application, checks: Sequence[ReadinessCheck]) -> None:
    app[CHECKS] = checks
    app.router.add_get("/healthz", healthz, name="healthz")
    app.router.add_get("/readyz", readyz, name="readyz")
