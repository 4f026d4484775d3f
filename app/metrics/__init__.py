"""Metrics: the Prometheus registry of one application and the HTTP request metrics.

Other plugins create their collectors on `app[METRICS].registry`. Each
application has its own registry (never the process-global default), so two
apps in one process — as in tests — never collide.
"""

from __future__ import annotations

from collections.abc import Sized

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, generate_latest
from prometheus_client.process_collector import ProcessCollector

from app.core.loop_metrics import LoopCounter, LoopHistogram

# A small fixed set keeps label cardinality bounded whatever clients send.
_KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED_ROUTE = "unmatched"


class Metrics:
    """The registry and the HTTP collectors; published as `app[METRICS]`."""

    def __init__(self, in_flight: Sized) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.content_type = CONTENT_TYPE_LATEST.split(";")[0]
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

    def observe_request(self, request: web.Request, status: int, seconds: float) -> None:
        """A request is over (a request observer: app/core/request_context.py)."""
        method = request.method
        if method not in _KNOWN_METHODS:
            method = "OTHER"
        self.observe(method, route_label(request), status, seconds)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


METRICS = web.AppKey("keel.metrics", Metrics)


def route_label(request: web.Request) -> str:
    """The route template (`/api/items/{id}`), never the raw path."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else UNMATCHED_ROUTE


def registry_of(app: web.Application) -> CollectorRegistry:
    """Where a plugin registers its collectors: the metrics plugin's registry, or a private
    one (its metrics then go nowhere) when that plugin is not enabled."""
    metrics = app.get(METRICS)
    return metrics.registry if metrics is not None else CollectorRegistry()
