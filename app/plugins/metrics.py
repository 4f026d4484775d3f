"""The `metrics` plugin: `GET /metrics` and the HTTP request metrics (`app.metrics`)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from app.core.lifecycle import LIFECYCLE
from app.core.request_context import REQUEST_OBSERVERS
from app.metrics import METRICS, Metrics
from app.plugins import BasePlugin


class MetricsPlugin(BasePlugin):
    name = "metrics"

    def setup(self, app: web.Application) -> None:
        self.metrics = Metrics(in_flight=app[LIFECYCLE].in_flight)
        app[METRICS] = self.metrics
        app[REQUEST_OBSERVERS].append(self.metrics.observe_request)
        app.router.add_get("/metrics", self.handle_metrics, name="metrics")

    async def handle_metrics(self, request: web.Request) -> web.Response:
        body = self.metrics.exposition()
        response = web.Response(body=body)
        response.content_type = self.metrics.content_type
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
