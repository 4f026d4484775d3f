"""The dashboard's IO-free parts: series, quantiles, redaction, degraded dependencies, tokens."""

from __future__ import annotations

import random
from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp import web
from aiohttp.web_urldispatcher import SystemRoute

from app.admin.degraded import DegradedTracker, find_degraded, merge
from app.admin.redact import Redactor, secret_values
from app.admin.security import Tokens
from app.admin.series import (
    BOUNDS,
    UNMATCHED,
    Point,
    RouteSeries,
    columns,
    decode_point,
    encode_point,
    quantile,
)
from tests.support.apps import ConfigFactory
from tests.support.clock import Clock


def request_for(route: Any) -> Any:
    return SimpleNamespace(match_info=SimpleNamespace(route=route))


async def _handler(request: web.Request) -> web.Response:
    return web.Response()


def route(method: str, template: str) -> Any:
    """A real route of a real router, as `request.match_info.route` holds it."""
    return web.Application().router.add_route(method, template, _handler)


# --- series -----------------------------------------------------------------------------


@pytest.mark.parametrize("q", [0.5, 0.99])
def test_quantiles_from_buckets_are_within_a_bucket_of_the_truth(q: float) -> None:
    rng = random.Random(7)
    samples = sorted(rng.lognormvariate(-5, 1.2) for _ in range(5000))
    buckets = [0] * len(BOUNDS)
    import bisect

    for s in samples:
        buckets[bisect.bisect_left(BOUNDS, s)] += 1
    truth = samples[int(q * len(samples)) - 1] * 1000
    estimate = quantile(buckets, len(samples), q)
    assert estimate is not None
    assert truth / 1.25 <= estimate <= truth * 1.25


def test_no_requests_no_quantile() -> None:
    assert quantile([0] * len(BOUNDS), 0, 0.5) is None


def test_a_second_rolls_into_a_point_per_route_and_starts_over() -> None:
    series = RouteSeries(clock=Clock(100.5))
    items, health = route("GET", "/api/items/{id}"), route("GET", "/healthz")
    for seconds, status in [(0.002, 200), (0.004, 200), (0.3, 503)]:
        series.observe(request_for(items), status, seconds)
    series.observe(request_for(health), 200, 0.0001)
    t, routes = series.roll()
    assert t == 99
    count, errors, p50, p99 = routes["GET /api/items/{id}"]
    assert (count, errors) == (3, 1)
    assert p50 is not None
    assert 3 <= p50 <= 5
    assert p99 is not None
    assert 240 <= p99 <= 300
    assert routes["GET /healthz"][:2] == (1, 0)
    assert series.roll(100) == (100, {})  # nothing since: an empty second, still a point
    assert [p[0] for p in series.since(99)] == [100]


def test_unmatched_requests_share_one_route_and_are_not_kept_per_object() -> None:
    series = RouteSeries()
    for _ in range(3):
        # aiohttp makes a new SystemRoute for every unmatched request.
        series.observe(request_for(SystemRoute(web.HTTPNotFound())), 404, 0.001)
    _, routes = series.roll(1)
    assert routes == {UNMATCHED: routes[UNMATCHED]}
    assert routes[UNMATCHED][0] == 3
    assert len(series._seconds) == 0


def test_points_are_kept_for_fifteen_minutes() -> None:
    series = RouteSeries()
    for t in range(1000):
        series.roll(t)
    assert len(series.points) == 900
    assert series.points[0][0] == 100


def test_columns_align_every_route_on_one_time_axis() -> None:
    points: list[Point] = [
        (11, {"GET /b": (2, 0, 1.0, 2.0)}),
        (10, {"GET /a": (5, 1, 3.0, 9.0)}),
        (12, {}),
    ]
    assert columns(points) == {
        "step": 1,
        "t": [10, 11, 12],
        "routes": {
            "GET /a": {"rate": [5, 0, 0], "errors": [1, 0, 0], "p50": [3.0, None, None],
                       "p99": [9.0, None, None]},
            "GET /b": {"rate": [0, 2, 0], "errors": [0, 0, 0], "p50": [None, 1.0, None],
                       "p99": [None, 2.0, None]},
        },
    }  # fmt: skip


def test_points_survive_their_trip_through_redis() -> None:
    point: Point = (5, {"GET /a": (1, 0, 0.5, 0.7)})
    assert decode_point(encode_point(point)) == point
    assert decode_point({"t": "x"}) is None
    assert decode_point([1, 2]) is None


# --- redaction --------------------------------------------------------------------------


def test_url_passwords_are_masked_anywhere_in_a_value() -> None:
    redact = Redactor()
    value = {
        "dsn": "postgresql://app:hunter22@db:5432/x",
        "nested": ["error: cannot reach amqp://guest:guest-pw@mq:5672/ (refused)"],
        "plain": "http://example.com/a@b",
        "n": 3,
    }
    assert redact(value) == {
        "dsn": "postgresql://app:***@db:5432/x",
        "nested": ["error: cannot reach amqp://guest:***@mq:5672/ (refused)"],
        "plain": "http://example.com/a@b",
        "n": 3,
    }


def test_every_configured_secret_is_found_and_masked(make_config: ConfigFactory) -> None:
    config = make_config(
        ADMIN__TOKEN="tok-0123456789",
        REDIS__URL="redis://:red%21pw@127.0.0.1:6379/0",
        UPSTREAMS__PAY__URL="http://u:upstream-pw@pay:1/",
    )
    found = set(secret_values(config))
    assert {"tok-0123456789", "red%21pw", "red!pw", "upstream-pw"} <= found
    redact = Redactor(found)
    assert redact({"msg": "token tok-0123456789 and red!pw"}) == {"msg": "token *** and ***"}


def test_short_values_are_not_treated_as_secrets() -> None:
    assert Redactor(["ab", ""]).text("ab abc") == "ab abc"


# --- degraded dependencies ----------------------------------------------------------------


def test_degraded_dependencies_are_read_from_the_plugins_state() -> None:
    plugins = {
        "breakers": {"breakers": [
            {"name": "redis", "state": "closed", "failure_rate": 0},
            {"name": "upstream.pay", "state": "open", "failure_rate": 80.0},
            {"name": "shard.1", "state": "forced_open", "failure_rate": 0},
        ]},
        "redis": {"enabled": True, "last_error": "Connection refused"},
        "sharding": {"shards": [{"name": "shard.0", "healthy": False, "error": "timed out"}]},
        "queue": {"backend": "rabbitmq", "connected": False, "error": "refused"},
    }  # fmt: skip
    assert find_degraded(plugins, {}) == {
        "upstream.pay": "circuit open (80.0% of calls failed)",
        "shard.1": "circuit forced open",
        "redis": "unreachable: Connection refused",
        "shard.0": "down: timed out",
        "amqp": "unreachable: refused",
    }


def test_a_plugin_not_ready_for_another_reason_gets_a_banner() -> None:
    readiness = {"cache": {"status": "degraded", "detail": "bypassed"}, "x": {"status": "ok"}}
    assert find_degraded({}, readiness) == {"plugin.cache": "degraded: bypassed"}


def test_the_tracker_remembers_since_when() -> None:
    clock = Clock(100)
    tracker = DegradedTracker(clock)
    assert tracker.update({"redis": "down"}) == [{"name": "redis", "detail": "down", "since": 100}]
    clock.now = 130
    assert tracker.update({"redis": "still"})[0]["since"] == 100
    assert tracker.update({}) == []
    assert tracker.update({"redis": "again"})[0]["since"] == 130


def test_banners_merge_across_instances_and_ignore_stale_ones() -> None:
    instances: list[dict[str, Any]] = [
        {"id": "a", "degraded": [{"name": "redis", "detail": "x", "since": 50}]},
        {"id": "b", "degraded": [{"name": "redis", "detail": "y", "since": 40}]},
        {"id": "c", "stale": True, "degraded": [{"name": "amqp", "detail": "z", "since": 1}]},
    ]
    assert merge(instances) == [
        {"name": "redis", "detail": "x", "since": 40, "instances": ["a", "b"]}
    ]


# --- tokens -------------------------------------------------------------------------------


def test_tokens_grant_their_role_only() -> None:
    tokens = Tokens("operator-secret", "viewer-secret")
    assert tokens.role_for("operator-secret") == "operator"
    assert tokens.role_for("viewer-secret") == "viewer"
    for wrong in ("", "operator-secre", "operator-secret ", "x" * 1000):
        assert tokens.role_for(wrong) is None
    assert Tokens("operator-secret").role_for("") is None


def test_the_login_form_token_is_bound_to_its_nonce_and_the_config() -> None:
    tokens = Tokens("operator-secret")
    field = tokens.form_token("nonce-1")
    assert tokens.form_token_valid("nonce-1", field)
    assert Tokens("operator-secret").form_token_valid("nonce-1", field)  # any instance
    assert not tokens.form_token_valid("nonce-2", field)
    assert not tokens.form_token_valid(None, field)
    assert not Tokens("other-secret").form_token_valid("nonce-1", field)


def test_an_empty_operator_token_is_refused() -> None:
    with pytest.raises(ValueError, match="must not be empty"):
        Tokens("")
