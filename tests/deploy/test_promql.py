"""The expression readers the metric checks rely on (tests/deploy/promql.py)."""

from __future__ import annotations

import pytest

from tests.deploy.promql import (
    as_plain_promql,
    dashboard_expressions,
    dashboard_variable_queries,
    keel_metric_names,
    label_values,
    selectors,
)

EXPR = (
    'sum by (route) (rate(keel_http_requests_total{job="keel", route=~"/ws|/admin/ws"}[5m]))'
    " / ignoring(x) keel_cache_requests_total + xkeel_not_ours"
)


def test_keel_metric_names_finds_each_name_once_and_no_lookalikes() -> None:
    assert keel_metric_names(EXPR) == {"keel_http_requests_total", "keel_cache_requests_total"}


def test_selectors_read_every_matcher_with_its_operator() -> None:
    found = list(selectors(EXPR))
    assert found == [
        ("keel_http_requests_total", [("job", "=", "keel"), ("route", "=~", "/ws|/admin/ws")]),
    ]


def test_selectors_read_braces_and_escaped_quotes_inside_values() -> None:
    expression = r'keel_x{route="/api/items/{id}", note="a \"q\"", } + keel_y {le="+Inf"}'
    assert list(selectors(expression)) == [
        ("keel_x", [("route", "=", "/api/items/{id}"), ("note", "=", r"a \"q\"")]),
        ("keel_y", [("le", "=", "+Inf")]),
    ]


def test_selectors_refuse_what_they_cannot_read() -> None:
    with pytest.raises(ValueError, match="keel_x"):
        list(selectors("keel_x{job=keel}"))


def test_label_values_splits_regex_alternatives() -> None:
    assert label_values('up{job=~"keel|keel-worker"} == 0 or up{job="other"}', "job") == {
        "keel",
        "keel-worker",
        "other",
    }


def test_grafana_variables_become_plain_promql() -> None:
    text = 'rate(keel_a{instance=~"$instance", route=~"${route}"}[$__rate_interval])'
    assert as_plain_promql(text) == 'rate(keel_a{instance=~".*", route=~".*"}[5m])'


def test_dashboard_readers_walk_rows_and_variables() -> None:
    dashboard = {
        "panels": [
            {
                "title": "row",
                "type": "row",
                "panels": [{"title": "in row", "targets": [{"refId": "A", "expr": "keel_a"}]}],
            },
            {"title": "top", "targets": [{"refId": "B", "expr": "keel_b"}, {"refId": "C"}]},
        ],
        "templating": {
            "list": [
                {"name": "ds", "type": "datasource", "query": "prometheus"},
                {
                    "name": "instance",
                    "type": "query",
                    "query": {"query": "label_values(keel_c, x)"},
                },
            ]
        },
    }
    assert dashboard_expressions(dashboard) == [
        ("panel 'in row' A", "keel_a"),
        ("panel 'top' B", "keel_b"),
    ]
    assert dashboard_variable_queries(dashboard) == [
        ("variable $instance", "label_values(keel_c, x)")
    ]
