"""deploy/prometheus: promtool accepts the config and the rules, and the unit tests pass."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.deploy.conftest import PROMETHEUS, debian_tool, load_yaml, run
from tests.deploy.promql import alert_expressions, label_values

CONFIG = PROMETHEUS / "prometheus.yml"
ALERTS = PROMETHEUS / "alerts.yml"
ALERT_TESTS = PROMETHEUS / "alerts_test.yml"
# What an on-call engineer is paged or warned for (issue 17).
EXPECTED_ALERTS = {
    "KeelHighErrorRate",
    "KeelHighLatency",
    "KeelCircuitBreakerOpen",
    "KeelDependencyDegraded",
    "KeelQueueBacklogGrowing",
    "KeelDeadJobs",
    "KeelInstanceDown",
    "KeelAllInstancesDown",
    "KeelWebSocketSlowClients",
}


@pytest.fixture(scope="module")
def promtool() -> str:
    return debian_tool("promtool", "prometheus")


def alert_rules() -> list[dict[str, Any]]:
    return [rule for group in load_yaml(ALERTS)["groups"] for rule in group["rules"]]


def scrape_jobs() -> dict[str, dict[str, Any]]:
    return {job["job_name"]: job for job in load_yaml(CONFIG)["scrape_configs"]}


def static_targets(job: dict[str, Any]) -> list[str]:
    return [target for config in job.get("static_configs", []) for target in config["targets"]]


def test_promtool_check_config(promtool: str) -> None:
    result = run(promtool, "check", "config", str(CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rule files found" in result.stdout


def test_promtool_check_rules(promtool: str) -> None:
    result = run(promtool, "check", "rules", str(ALERTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in result.stdout


def test_promtool_unit_tests_pass(promtool: str) -> None:
    result = run(promtool, "test", "rules", str(ALERT_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_unit_tests_can_fail(promtool: str, tmp_path: Path) -> None:
    """A rule that no longer fires where the tests expect it fails them."""
    (tmp_path / "alerts.yml").write_text(
        ALERTS.read_text().replace("> 0.05", "> 0.5", 1)  # KeelHighErrorRate's threshold
    )
    (tmp_path / "alerts_test.yml").write_text(ALERT_TESTS.read_text())
    result = run(promtool, "test", "rules", "alerts_test.yml", cwd=tmp_path)
    assert result.returncode != 0
    assert "KeelHighErrorRate" in result.stdout + result.stderr


def test_every_alert_is_there_with_a_summary_and_a_runbook() -> None:
    rules = alert_rules()
    assert {rule["alert"] for rule in rules} == EXPECTED_ALERTS
    for rule in rules:
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, rule["alert"]
        annotations = rule["annotations"]
        assert annotations.get("summary"), rule["alert"]
        assert annotations.get("runbook"), rule["alert"]


def test_every_alert_is_unit_tested_firing() -> None:
    fired = {
        case["alertname"]
        for test in load_yaml(ALERT_TESTS)["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert fired == EXPECTED_ALERTS


def test_every_alert_is_unit_tested_not_firing() -> None:
    quiet = {
        case["alertname"]
        for test in load_yaml(ALERT_TESTS)["tests"]
        for case in test.get("alert_rule_test", [])
        if not case.get("exp_alerts")
    }
    assert quiet == EXPECTED_ALERTS


def test_alerts_name_only_jobs_that_prometheus_scrapes() -> None:
    jobs = set(scrape_jobs())
    for where, expression in alert_expressions(load_yaml(ALERTS)):
        named = label_values(expression, "job")
        assert named <= jobs, f"{where}: jobs {sorted(named - jobs)} are not scraped"


def test_every_instance_and_the_worker_are_scraped_directly(
    compose_resolved: dict[str, Any],
) -> None:
    """Each serving instance by name; the workers by DNS, so scaling them adds targets."""
    services = compose_resolved["services"]
    serving = [name for name, spec in services.items() if spec.get("command", [])[-1:] == ["serve"]]
    assert static_targets(scrape_jobs()["keel"]) == [f"{name}:8080" for name in sorted(serving)]
    for name in serving:
        assert "127.0.0.1:8080/" in " ".join(services[name]["healthcheck"]["test"])
    (workers,) = scrape_jobs()["keel-worker"]["dns_sd_configs"]
    assert workers["names"] == ["worker"]
    assert services["worker"]["command"][-1] == "worker"
    assert f"127.0.0.1:{workers['port']}/" in " ".join(services["worker"]["healthcheck"]["test"])
