"""`GET /healthz` (liveness) and `GET /readyz` (readiness, per plugin)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from aiohttp import web

from app.core.json_codec import json_response
from app.core.lifecycle import LIFECYCLE, Phase
from app.plugins import Plugin, Readiness

# A readiness probe must answer quickly even when a dependency hangs.
CHECK_TIMEOUT = 2.0

PLUGINS: web.AppKey[Sequence[Plugin]] = web.AppKey("keel.plugins")

_HEALTHY = b'{"status":"ok"}'


async def healthz(request: web.Request) -> web.Response:
    """200 while the process runs: nothing here may depend on anything else."""
    return web.Response(body=_HEALTHY, content_type="application/json")


async def _check(plugin: Plugin) -> Readiness:
    try:
        async with asyncio.timeout(CHECK_TIMEOUT):
            return await plugin.readiness()
    except TimeoutError:
        return Readiness("down", f"readiness check took over {CHECK_TIMEOUT}s")


async def readiness_report(plugins: Sequence[Plugin], phase: Phase) -> tuple[int, dict[str, Any]]:
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
    code, body = await readiness_report(request.app[PLUGINS], request.app[LIFECYCLE].phase)
    return json_response(body, status=code)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz, name="healthz")
    app.router.add_get("/readyz", readyz, name="readyz")
