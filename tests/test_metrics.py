"""The metrics plugin: HTTP series labelled by route template, and the exposition."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

from app.application import create_app
from tests.support.apps import PROBE, ConfigFactory


@pytest.fixture
async def client(aiohttp_client, make_config: ConfigFactory) -> TestClient:
    return await aiohttp_client(create_app(make_config(PLUGINS__ENABLED=f'["metrics", "{PROBE}"]')))


async def scrape(client: TestClient) -> dict[tuple[str, frozenset], float]:
    response = await client.get("/metrics")
    assert response.status == 200
    assert response.content_type == "text/plain"
    samples = {}
    for family in text_string_to_metric_families(await response.text()):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def test_requests_are_labelled_by_route_template_never_raw_path(client: TestClient) -> None:
    for item_id in ("a", "b", "c"):
        assert (await client.get(f"/test/items/{item_id}")).status == 200
    samples = await scrape(client)
    labels = {"method": "GET", "route": "/test/items/{id}", "status": "200"}
    assert value(samples, "keel_http_requests_total", **labels) == 3
    assert not any("/test/items/a" in str(key) for key in samples)
    count = value(
        samples,
        "keel_http_request_duration_seconds_count",
        method="GET",
        route="/test/items/{id}",
    )
    assert count == 3


async def test_errors_and_unmatched_paths_are_counted_with_their_status(client: TestClient) -> None:
    await client.get("/test/raise/NotFound")
    await client.get("/test/raise/boom")
    await client.get("/random/path/123")
    samples = await scrape(client)
    route = "/test/raise/{name}"
    assert value(samples, "keel_http_requests_total", method="GET", route=route, status="404") == 1
    assert value(samples, "keel_http_requests_total", method="GET", route=route, status="500") == 1
    unmatched = {"method": "GET", "route": "unmatched", "status": "404"}
    assert value(samples, "keel_http_requests_total", **unmatched) == 1


async def test_unknown_methods_share_one_label(client: TestClient) -> None:
    await client.request("PROPFIND", "/healthz")
    samples = await scrape(client)
    assert value(
        samples, "keel_http_requests_total", method="OTHER", route="unmatched", status="405"
    )


async def test_in_flight_gauge_counts_the_scrape_itself(client: TestClient) -> None:
    samples = await scrape(client)
    assert value(samples, "keel_http_requests_in_flight") == 1
    samples = await scrape(client)
    assert value(samples, "keel_http_requests_in_flight") == 1  # earlier requests were released


async def test_each_app_has_its_own_registry(aiohttp_client, make_config: ConfigFactory) -> None:
    first = await aiohttp_client(create_app(make_config()))
    second = await aiohttp_client(create_app(make_config()))
    await first.get("/healthz")
    samples = await scrape(second)
    ok = {"method": "GET", "route": "/healthz", "status": "200"}
    assert value(samples, "keel_http_requests_total", **ok) == 0
