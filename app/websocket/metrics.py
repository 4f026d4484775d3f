"""The `keel_ws_*` metrics, read at scrape time from plain counters.

Nothing is incremented through prometheus_client on the message path: the hub
and the service count in ints, and this collector turns them into samples
when `/metrics` is scraped — a broadcast to 1000 sockets costs no metric call.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

if TYPE_CHECKING:
    from app.websocket.service import WebSocketService


class WebSocketCollector:
    def __init__(self, service: WebSocketService) -> None:
        self.service = service

    def collect(self) -> Iterator[Metric]:
        service = self.service
        yield GaugeMetricFamily(
            "keel_ws_connections",
            "Open WebSocket connections on /ws.",
            value=len(service.hub.connections),
        )
        messages = CounterMetricFamily(
            "keel_ws_messages",
            "WebSocket frames: in = received from clients, out = sent to clients.",
            labels=("direction",),
        )
        messages.add_metric(("in",), service.received)
        messages.add_metric(("out",), service.hub.delivered + service.replied)
        yield messages
        yield CounterMetricFamily(
            "keel_ws_slow_client_closes",
            "Clients closed with 1013 because their send queue was full.",
            value=service.slow_closes,
        )
        recoveries = CounterMetricFamily(
            "keel_ws_recoveries",
            "Subscribes with `since`: recovered = every missed message replayed,"
            " reset = the client was told to reload (recovered: false).",
            labels=("result",),
        )
        recoveries.add_metric(("recovered",), service.recoveries.recovered)
        recoveries.add_metric(("reset",), service.recoveries.reset)
        yield recoveries
        yield GaugeMetricFamily(
            "keel_ws_bus_up",
            "1 when publications reach every instance, 0 when only local subscribers get them.",
            value=1 if service.bus.healthy else 0,
        )
