"""The `metrics` plugin: the Prometheus registry, HTTP metrics and `GET /metrics`.

Other plugins create their collectors on `app[METRICS].registry`. Each
application has its own registry (never the process-global default), so two
apps in one process — as in tests — never collide.
"""

from __future__ import annotations

from collections.abc import Sized
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, generate_latest
from prometheus_client.process_collector import ProcessCollector

from app.core.lifecycle import LIFECYCLE
from app.core.loop_metrics import LoopCounter, LoopHistogram
from app.core.request_context import REQUEST_OBSERVERS
from app.plugins import BasePlugin

# A small fixed set keeps label cardinality bounded whatever clients send.
_KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED_ROUTE = "unmatched"


class Metrics:
    """The registry and the HTTP collectors; published as `app[METRICS]`."""

    def __init__(self, in_flight: Sized) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        # Updated on every request: plain numbers on the event loop (app/core/loop_metrics.py).
        self.requests = LoopCounter(
            "keel_http_requests",
            "HTTP requests by method, route template and status.",
            ("method", "route", "status"),
            registry=self.registry,
        )
        self.duration = LoopHistogram(
            "keel_http_request_duration_seconds",
            "HTTP request duration by method and route template.",
            ("method", "route"),
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "keel_http_requests_in_flight",
            "HTTP requests being served.",
            registry=self.registry,
        )
        # Read at scrape time from the lifecycle's tracker: no per-request cost.
        self.in_flight.set_function(lambda: len(in_flight))
        self.observed = 0

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.duration.labels(method, route).observe(seconds)
        self.requests.labels(method, route, str(status)).inc()
        self.observed += 1

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


METRICS = web.AppKey("keel.metrics", Metrics)


def route_label(request: web.Request) -> str:
    """The route template (`/api/items/{id}`), never the raw path."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else UNMATCHED_ROUTE


class MetricsPlugin(BasePlugin):
    name = "metrics"

    def setup(self, app: web.Application) -> None:
        self.metrics = Metrics(in_flight=app[LIFECYCLE].in_flight)
        app[METRICS] = self.metrics
        app[REQUEST_OBSERVERS].append(self.observe)
        app.router.add_get("/metrics", self.handle_metrics, name="metrics")

    def observe(self, request: web.Request, status: int, seconds: float) -> None:
        """A request is over (called by the groundwork middleware, app/core/request_context.py)."""
        method = request.method
        if method not in _KNOWN_METHODS:
            method = "OTHER"
        self.metrics.observe(method, route_label(request), status, seconds)

    async def handle_metrics(self, request: web.Request) -> web.Response:
        body = self.metrics.exposition()
        response = web.Response(body=body)
        response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
        response.charset = "utf-8"
        return response

    def state(self) -> dict[str, Any]:
        return {"requests_observed": self.metrics.observed}

    def openapi_paths(self) -> dict[str, Any]:
        return {
            "/metrics": {
                "get": {
                    "operationId": "metrics",
                    "summary": "Prometheus text exposition",
                    "tags": ["operations"],
                    "responses": {
                        "200": {
                            "description": "Metrics in the Prometheus text format",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        }
                    },
                }
            }
        }
