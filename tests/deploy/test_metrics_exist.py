"""Every `keel_*` metric the dashboard and the alert rules query is one Keel exposes.

Keel runs as deployed (tests/deploy/deployed.py), each plugin is exercised so
that labelled series exist, and `/metrics` of the serving instance and of the
worker are scraped. A metric renamed in the code, or misspelt in a panel or
a rule, fails here instead of silently blanking a panel or an alert.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiormq
import pytest

from tests.deploy.conftest import DASHBOARD, PROMETHEUS, load_yaml
from tests.deploy.deployed import (
    Exposed,
    create_shard_databases,
    files_under,
    run_deployed,
    shard_dsns,
)
from tests.deploy.promql import (
    Located,
    alert_expressions,
    dashboard_expressions,
    dashboard_variable_queries,
    keel_metric_names,
    selectors,
    unit_test_series,
)
from tests.queue.conftest import QUEUE_PREFIX, delete_queues
from tests.support.postgres import drop_database, run_as_admin
from tests.support.redis import delete_redis_keys
from tests.support.services import RUN_ID

# Labels Prometheus adds to every scraped series.
TARGET_LABELS = {"job", "instance"}


def queried() -> dict[str, list[Located]]:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return {
        "dashboard": dashboard_expressions(dashboard) + dashboard_variable_queries(dashboard),
        "alerts": alert_expressions(load_yaml(PROMETHEUS / "alerts.yml")),
        "alert unit tests": unit_test_series(load_yaml(PROMETHEUS / "alerts_test.yml")),
    }


@dataclass
class Deployed:
    exposed: Exposed
    data_dir: Path


@pytest.fixture(scope="module")
def deployed(
    tmp_path_factory: pytest.TempPathFactory, redis_url: str, pg_admin_url: str, amqp_url: str
) -> Iterator[Deployed]:
    tag = f"{RUN_ID}_{uuid.uuid4().hex[:6]}"
    databases = [f"keel_test_{tag}_shard{n}" for n in range(2)]
    prefix = f"keel-test:{tag}:"
    queue = f"{QUEUE_PREFIX}-deploy-{tag}"
    secrets = {
        "KEEL_REDIS__URL": redis_url,
        "KEEL_REDIS__KEY_PREFIX": prefix,
        "KEEL_AMQP__URL": amqp_url,
        "KEEL_QUEUE__NAME": queue,
        "KEEL_SHARDING__SHARDS": shard_dsns(pg_admin_url, databases),
        "KEEL_ADMIN__TOKEN": f"token-{tag}",
    }
    create_shard_databases(pg_admin_url, databases)
    try:
        tmp = tmp_path_factory.mktemp("deployed")
        yield Deployed(asyncio.run(run_deployed(tmp, secrets)), tmp / "data")
    finally:
        asyncio.run(run_as_admin(pg_admin_url, [drop_database(name) for name in databases]))
        with contextlib.suppress(OSError, aiormq.exceptions.AMQPError):
            asyncio.run(delete_queues(amqp_url, [f"{queue}.jobs", f"{queue}.dead"]))
        delete_redis_keys(redis_url, prefix)


@pytest.fixture
def exposed(deployed: Deployed) -> Exposed:
    return deployed.exposed


def test_the_exercise_reached_every_plugin(exposed: Exposed) -> None:
    """Labelled series exist only once used: each part was really exercised."""
    value = exposed.value
    assert value("keel_http_requests_total", route="/api/items/{id}", status="200") >= 2
    assert value("keel_cache_requests_total", result="hit") >= 1
    assert value("keel_ratelimit_decisions_total", result="limited") == 1
    assert value("keel_breaker_transitions_total", breaker="upstream.down", to="open") == 1
    assert value("keel_breaker_state", breaker="upstream.down") == 2
    assert value("keel_jobs_total", task="demo.echo", status="succeeded") == 1
    assert value("keel_jobs_total", task="demo.fail", status="dead") == 1
    assert value("keel_job_duration_seconds_count", task="demo.echo") == 1
    assert value("keel_ws_messages_total", direction="in") >= 2
    assert value("keel_ws_messages_total", direction="out") >= 2
    assert value("keel_ws_bus_up") >= 1
    for shard in ("shard.0", "shard.1"):
        assert value("keel_shard_queries_total", shard=shard) >= 1, shard
    assert value("keel_redis_commands_total") >= 1


@pytest.mark.parametrize("source", ["dashboard", "alerts", "alert unit tests"])
def test_every_queried_metric_is_exposed(exposed: Exposed, source: str) -> None:
    located = queried()[source]
    used = {name for _, text in located for name in keel_metric_names(text)}
    assert used, f"no keel_* metric found in the {source}: is the reader broken?"
    missing = [
        f"{where}: {name}"
        for where, text in located
        for name in sorted(keel_metric_names(text))
        if name not in exposed.names
    ]
    assert not missing, f"{source} queries metrics Keel does not expose:\n" + "\n".join(missing)


@pytest.mark.parametrize("source", ["dashboard", "alerts"])
def test_every_label_matched_is_one_the_metric_has(exposed: Exposed, source: str) -> None:
    wrong = [
        f"{where}: {metric}{{{label}}}"
        for where, text in queried()[source]
        if not text.startswith("label_values(")
        for metric, matchers in selectors(text)
        for label, _, _ in matchers
        if label not in TARGET_LABELS and label not in exposed.labels[metric]
    ]
    assert not wrong, f"{source} matches labels Keel does not set:\n" + "\n".join(wrong)


def test_alert_unit_tests_feed_series_shaped_like_keels(exposed: Exposed) -> None:
    wrong = []
    for where, series in queried()["alert unit tests"]:
        for metric, matchers in selectors(series):
            labels = {label for label, _, _ in matchers} - TARGET_LABELS
            if labels != exposed.labels[metric]:
                wrong.append(
                    f"{where}: {metric} {sorted(labels)} != {sorted(exposed.labels[metric])}"
                )
    assert not wrong, "\n".join(wrong)


def test_the_deployed_config_writes_nothing_under_data_dir(deployed: Deployed) -> None:
    """So an emptyDir (Kubernetes) or a tmpfs (compose) at data_dir loses nothing."""
    assert files_under(deployed.data_dir) == []
