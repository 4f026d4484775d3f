"""The event-loop metrics expose exactly what prometheus-client's own would, minus `_created`."""

from __future__ import annotations

import random

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from app.core.loop_metrics import LoopCounter, LoopHistogram


def exposition(registry: CollectorRegistry) -> list[str]:
    lines = generate_latest(registry).decode().splitlines()
    return [line for line in lines if "_created" not in line]


def test_a_counter_exposes_what_prometheus_clients_would() -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    loop = LoopCounter("demo_requests", "Requests.", ("method", "status"), ours)
    reference = Counter("demo_requests", "Requests.", ("method", "status"), registry=theirs)
    for method, status, amount in [("GET", "200", 1), ("GET", "200", 2.5), ("POST", "201", 1)]:
        loop.labels(method, status).inc(amount)
        reference.labels(method, status).inc(amount)
    assert exposition(ours) == exposition(theirs)
    assert ours.get_sample_value("demo_requests_total", {"method": "GET", "status": "200"}) == 3.5


def test_a_histogram_exposes_what_prometheus_clients_would() -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    loop = LoopHistogram("demo_seconds", "Durations.", ("route",), ours)
    reference = Histogram("demo_seconds", "Durations.", ("route",), registry=theirs)
    rng = random.Random(7)
    # Bucket bounds themselves (`le` is inclusive), values between, beyond the last, and zero.
    values = [0.0, 0.005, 0.0051, 0.1, 10.0, 11.0, 1e9] + [rng.expovariate(20) for _ in range(500)]
    for n, value in enumerate(values):
        route = "/a" if n % 3 else "/b"
        loop.labels(route).observe(value)
        reference.labels(route).observe(value)
    assert exposition(ours) == exposition(theirs)


def test_a_histogram_with_its_own_buckets_ends_with_inf() -> None:
    registry = CollectorRegistry()
    histogram = LoopHistogram("demo_sizes", "Sizes.", (), registry, buckets=(1, 10))
    for value in (0.5, 1, 5, 50):
        histogram.labels().observe(value)
    sample = registry.get_sample_value
    assert [sample("demo_sizes_bucket", {"le": le}) for le in ("1.0", "10.0", "+Inf")] == [2, 3, 4]
    assert sample("demo_sizes_count") == 4
    assert sample("demo_sizes_sum") == 56.5


def test_wrong_labels_are_refused_and_names_are_registered_once() -> None:
    registry = CollectorRegistry()
    counter = LoopCounter("demo_things", "Things.", ("kind",), registry)
    with pytest.raises(ValueError, match="expected labels"):
        counter.labels("a", "b")
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        Counter("demo_things", "Again.", registry=registry)
