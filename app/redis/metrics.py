"""`keel_redis_commands_total` and `keel_redis_pipelines_total`: the request path's Redis use."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, Metric

from app.redis.service import RedisService


class BatchCollector:
    """Commands sent on the request path and the pipelines (round trips) that carried them."""

    def __init__(self, service: RedisService) -> None:
        self.service = service

    def collect(self) -> Iterator[Metric]:
        batch = self.service.batch
        commands, pipelines = (batch.commands, batch.batches) if batch else (0, 0)
        yield CounterMetricFamily(
            "keel_redis_commands", "Redis commands sent on the request path.", value=commands
        )
        yield CounterMetricFamily(
            "keel_redis_pipelines",
            "Round trips that carried them (commands of one event-loop turn share one).",
            value=pipelines,
        )
