"""The PromQL that the dashboard and the alert rules hold, and what it names.

Pure functions over the parsed files: where each expression is, which
`keel_*` metrics and which label matchers it uses, and the dashboard's
Grafana variables replaced so that promtool can parse an expression.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

# A metric name starts the way identifiers do; `\b` keeps `xkeel_a` out.
_KEEL_NAME = re.compile(r"\bkeel_[A-Za-z0-9_:]*")
_MATCHER = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*,?')
# Grafana's interval variables stand for durations; the rest for label values.
_INTERVAL_VARIABLE = re.compile(
    r"\$__(rate_interval|interval|range)\b|\$\{__(rate_interval|interval|range)\}"
)
_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)")

Located = tuple[str, str]  # (where it is, the text)


def keel_metric_names(expression: str) -> set[str]:
    """Every `keel_*` name in an expression (metric names; Keel's labels have no prefix)."""
    return set(_KEEL_NAME.findall(expression))


def selectors(expression: str) -> Iterator[tuple[str, list[tuple[str, str, str]]]]:
    """(metric, [(label, operator, value)]) for each `keel_*{...}` selector."""
    for match in _KEEL_NAME.finditer(expression):
        rest = expression[match.end() :].lstrip()
        if not rest.startswith("{"):
            continue
        body = rest[1:]
        matchers: list[tuple[str, str, str]] = []
        while not body.lstrip().startswith("}"):
            matcher = _MATCHER.match(body)
            if matcher is None:
                raise ValueError(f"cannot read the selector of {match.group()} in: {expression}")
            matchers.append((matcher.group(1), matcher.group(2), matcher.group(3)))
            body = body[matcher.end() :]
        yield match.group(), matchers


def label_values(expression: str, label: str) -> set[str]:
    """Values an expression's matchers give `label` (`=` values, and `=~` alternatives)."""
    values: set[str] = set()
    for name, operator, value in _all_matchers(expression):
        if name == label and operator == "=":
            values.add(value)
        elif name == label and operator == "=~":
            values.update(value.split("|"))
    return values


def _all_matchers(expression: str) -> Iterator[tuple[str, str, str]]:
    for block in re.finditer(r"\{([^{}]*(?:\{[^{}]*\}[^{}]*)*)\}", expression):
        body = block.group(1)
        while body.strip():
            matcher = _MATCHER.match(body)
            if matcher is None:
                break
            yield matcher.group(1), matcher.group(2), matcher.group(3)
            body = body[matcher.end() :]


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, rows' nested panels included."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def dashboard_expressions(dashboard: dict[str, Any]) -> list[Located]:
    """The PromQL of every panel target, as (panel title, expression)."""
    found: list[Located] = []
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            if "expr" in target:
                found.append(
                    (f"panel {panel.get('title')!r} {target.get('refId')}", target["expr"])
                )
    return found


def dashboard_variable_queries(dashboard: dict[str, Any]) -> list[Located]:
    """The queries of the dashboard's query variables (`label_values(metric, label)`)."""
    found: list[Located] = []
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") != "query":
            continue
        query = variable.get("query")
        text = query.get("query", "") if isinstance(query, dict) else str(query or "")
        found.append((f"variable ${variable['name']}", text))
        if variable.get("definition"):
            found.append((f"variable ${variable['name']} definition", variable["definition"]))
    return found


def alert_expressions(rules: dict[str, Any]) -> list[Located]:
    """(alert or record name, expression) of every rule in a Prometheus rules file."""
    found: list[Located] = []
    for group in rules.get("groups", []):
        for rule in group.get("rules", []):
            name = rule.get("alert") or rule.get("record")
            found.append((f"rule {name}", str(rule["expr"])))
    return found


def unit_test_series(unit_tests: dict[str, Any]) -> list[Located]:
    """The input series of a promtool unit-test file, as (test name, series selector)."""
    return [
        (f"test {test.get('name')!r}", series["series"])
        for test in unit_tests.get("tests", [])
        for series in test.get("input_series", [])
    ]


def as_plain_promql(expression: str) -> str:
    """The expression with Grafana's variables replaced: intervals by 5m, others by `.*`.

    Variables stand inside regex matchers (`instance=~"$instance"`), where `.*`
    is what "All" means.
    """
    expression = _INTERVAL_VARIABLE.sub("5m", expression)
    return _VARIABLE.sub(".*", expression)
