"""The loader: names and import paths, dependency order, and every refusal."""

from __future__ import annotations

import pytest

from app.errors import PluginError
from app.plugins import BUILTIN, resolve

R = "tests.support.plugins.recording"


def names(entries: list[str]) -> list[str]:
    return [cls.name for cls in resolve(entries)]


def problems(entries: list[str]) -> list[str]:
    with pytest.raises(PluginError) as caught:
        resolve(entries)
    return caught.value.problems


def test_builtin_names_resolve() -> None:
    assert names(["metrics", "redis"]) == ["metrics", "redis"]
    assert set(BUILTIN) >= {"metrics", "redis"}


def test_requirements_come_first_whatever_the_configured_order() -> None:
    entries = [f"{R}:NeedsBoth", f"{R}:NeedsBase", f"{R}:Base"]
    assert names(entries) == ["base", "needs_base", "needs_both"]


def test_independent_plugins_keep_the_configured_order() -> None:
    assert names(["redis", "sharding"]) == ["redis", "sharding"]
    assert names(["sharding", "redis"]) == ["sharding", "redis"]


def test_optional_dependency_orders_only_when_enabled() -> None:
    assert names([f"{R}:UsesBase", f"{R}:Base"]) == ["base", "uses_base"]
    assert names([f"{R}:UsesBase"]) == ["uses_base"]


def test_unknown_name_says_what_is_known() -> None:
    (line,) = problems(["metrics", "nope"])
    assert 'unknown plugin "nope"' in line
    assert "metrics" in line
    assert "package.module:Class" in line


def test_bad_import_paths() -> None:
    lines = problems(["no.such.module:Plugin", f"{R}:Missing", f"{R}:NotAPlugin"])
    assert len(lines) == 3
    assert "no.such.module" in lines[0]
    assert "has no attribute 'Missing'" in lines[1]
    assert "is not a plugin class" in lines[2]


def test_missing_requirement_says_how_to_fix_it() -> None:
    (line,) = problems([f"{R}:NeedsMissing"])
    assert line == (
        'plugins.enabled: "needs_missing" requires "queue": add "queue" to plugins.enabled'
    )


def test_duplicate_by_name_and_by_import_path() -> None:
    (line,) = problems(["metrics", "app.plugins.metrics:MetricsPlugin"])
    assert 'plugin "metrics" is listed twice' in line


def test_cycle_is_named() -> None:
    (line,) = problems([f"{R}:CycleA", f"{R}:CycleB"])
    assert "requirement cycle cycle_a -> cycle_b -> cycle_a" in line


def test_every_problem_is_reported_at_once() -> None:
    lines = problems(["nope", f"{R}:NeedsMissing", "metrics", "metrics"])
    assert len(lines) == 3
