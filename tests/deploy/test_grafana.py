"""deploy/grafana: the provisioning the compose stack mounts, and the Keel dashboard."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.conftest import DASHBOARD, DEPLOY, GRAFANA, debian_tool, load_yaml, run
from tests.deploy.promql import (
    as_plain_promql,
    dashboard_expressions,
    keel_metric_names,
    panels,
)

DATASOURCES = GRAFANA / "provisioning" / "datasources" / "prometheus.yml"
PROVIDERS = GRAFANA / "provisioning" / "dashboards" / "keel.yml"
# What the dashboard must show (issue 17), by the metric that shows it.
SHOWN = {
    "request rate, errors": "keel_http_requests_total",
    "latency per route": "keel_http_request_duration_seconds_bucket",
    "in flight": "keel_http_requests_in_flight",
    "cache hit ratio": "keel_cache_requests_total",
    "rate-limit decisions": "keel_ratelimit_decisions_total",
    "breaker states": "keel_breaker_state",
    "jobs by status": "keel_jobs_total",
    "queue depth": "keel_queue_depth",
    "WebSocket connections": "keel_ws_connections",
    "WebSocket messages": "keel_ws_messages_total",
    "shard queries": "keel_shard_queries_total",
    "shard latency": "keel_shard_query_duration_seconds_bucket",
    "Redis commands per request": "keel_redis_commands_total",
}


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return loaded


def variables(dashboard: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in dashboard["templating"]["list"]}


def compose_mount(compose: dict[str, Any], service: str, source: Path) -> str:
    for volume in compose["services"][service]["volumes"]:
        host, target = volume.split(":")[:2]
        if Path(host) == source:
            return target
    raise AssertionError(f"{source} is not mounted into {service}")


def test_the_dashboard_shows_what_an_operator_needs(dashboard: dict[str, Any]) -> None:
    used = set().union(*(keel_metric_names(e) for _, e in dashboard_expressions(dashboard)))
    missing = {what: metric for what, metric in SHOWN.items() if metric not in used}
    assert not missing, missing


def test_the_dashboard_has_instance_and_route_variables(dashboard: dict[str, Any]) -> None:
    found = variables(dashboard)
    for name in ("instance", "route"):
        assert found[name]["type"] == "query"
        assert found[name]["includeAll"]
        assert found[name]["multi"]
        assert found[name]["allValue"] == ".*"
    expressions = [e for _, e in dashboard_expressions(dashboard)]
    assert all('instance=~"$instance"' in e for e in expressions)
    assert sum('route=~"$route"' in e for e in expressions) >= 4


def test_panels_are_laid_out_with_unique_ids_and_queries(dashboard: dict[str, Any]) -> None:
    ids = [panel["id"] for panel in panels(dashboard)]
    assert len(ids) == len(set(ids))
    for panel in panels(dashboard):
        assert {"h", "w", "x", "y"} <= set(panel["gridPos"]), panel["title"]
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24, panel["title"]
        if panel["type"] != "row":
            assert panel["targets"], panel["title"]
            assert all(t["expr"] for t in panel["targets"]), panel["title"]


def test_every_query_uses_the_provisioned_data_source(dashboard: dict[str, Any]) -> None:
    (source,) = load_yaml(DATASOURCES)["datasources"]
    chooser = variables(dashboard)["datasource"]
    assert chooser["type"] == "datasource"
    assert chooser["query"] == source["type"]
    assert chooser["current"]["value"] == source["uid"]
    for panel in panels(dashboard):
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"], panel["title"]


def test_every_dashboard_expression_is_valid_promql(
    dashboard: dict[str, Any], tmp_path: Path
) -> None:
    """promtool parses each expression as a recording rule (variables filled in)."""
    promtool = debian_tool("promtool", "prometheus")
    rules = [
        {"record": f"dashboard:expression_{index}", "expr": as_plain_promql(expression)}
        for index, (_, expression) in enumerate(dashboard_expressions(dashboard))
    ]
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = run(promtool, "check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_grafana_reads_the_mounted_provisioning(compose_resolved: dict[str, Any]) -> None:
    provisioning = compose_mount(compose_resolved, "grafana", GRAFANA / "provisioning")
    assert provisioning == "/etc/grafana/provisioning"
    (provider,) = load_yaml(PROVIDERS)["providers"]
    dashboards = compose_mount(compose_resolved, "grafana", GRAFANA / "dashboards")
    assert provider["options"]["path"] == dashboards
    home = compose_resolved["services"]["grafana"]["environment"]
    assert home["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"] == f"{dashboards}/{DASHBOARD.name}"


def test_the_data_source_is_the_stacks_prometheus(compose_resolved: dict[str, Any]) -> None:
    (source,) = load_yaml(DATASOURCES)["datasources"]
    assert source["url"] == "http://prometheus:9090"
    assert "prometheus" in compose_resolved["services"]
    scrape = load_yaml(DEPLOY / "prometheus" / "prometheus.yml")["global"]["scrape_interval"]
    assert source["jsonData"]["timeInterval"] == scrape
