"""The report: one row per scenario (terminal and Markdown), a verdict per promise, JSON."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from bench.fault_report.figures import Row

BACK_TO_NORMAL_GOAL = 5.0  # seconds after the fault ends
REDIS_RESTART = "redis-restart"
ROLLING_RESTART = "rolling-restart"
INSTANCE_CRASH = "instance-crash"

HEADERS = (
    "scenario",
    "fault",
    "sent",
    "2xx",
    "4xx",
    "declared",
    "5xx other",
    "conn errors",
    "stale reads",
    "jobs acc/done/lost",
    "ws pub/deliv/recov/reset/lost",
    "back to normal",
)


def _seconds(value: float | None) -> str:
    return "never" if value is None else f"{value:.1f} s"


def cells(row: Row) -> list[str]:
    other = {k: v for k, v in row.unexplained_by.items() if k != "no answer"}
    by_code = ", ".join(f"{n} {code}" for code, n in sorted(other.items()))
    jobs = row.jobs
    m = row.messages
    back = _seconds(row.back_to_normal)
    if row.last_to_recover and row.back_to_normal != 0:
        back += f" ({row.last_to_recover})"
    return [
        row.scenario,
        row.fault,
        str(row.sent),
        str(row.ok),
        str(row.client_errors),
        str(row.declared),
        f"{sum(other.values())}" + (f" ({by_code})" if by_code else ""),
        str(row.errors.get("no answer", 0)),
        str(row.stale),
        f"{jobs.accepted}/{jobs.completed}/{len(jobs.lost)}",
        f"{m.published}/{m.delivered}/{m.recovered}/{m.reset}/{m.lost}",
        back,
    ]


def markdown(rows: Sequence[Row]) -> str:
    lines = [
        "| " + " | ".join(HEADERS) + " |",
        "|" + "|".join("---" for _ in HEADERS) + "|",
    ]
    lines += ["| " + " | ".join(cells(row)) + " |" for row in rows]
    return "\n".join(lines)


def table(rows: Sequence[Row]) -> str:
    grid = [list(HEADERS), *(cells(row) for row in rows)]
    widths = [max(len(line[i]) for line in grid) for i in range(len(HEADERS))]
    out = []
    for n, line in enumerate(grid):
        out.append("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)))
        if n == 0:
            out.append("  ".join("-" * width for width in widths))
    return "\n".join(out)


@dataclass(frozen=True)
class Verdict:
    promise: str
    held: bool
    detail: str


def _where(rows: Sequence[Row], figure: str, values: dict[str, int]) -> str:
    bad = {name: n for name, n in values.items() if n}
    if not bad:
        return f"0 {figure} in {len(rows)} scenario(s)"
    return "; ".join(f"{n} {figure} in {name}" for name, n in bad.items())


def verdicts(rows: Sequence[Row]) -> list[Verdict]:
    """One verdict per promise of the issue, over the scenario rows (not the baseline)."""
    by_name = {row.scenario: row for row in rows}
    out = [
        Verdict(
            "0 stale reads",
            all(r.stale == 0 for r in rows),
            _where(rows, "stale read(s)", {r.scenario: r.stale for r in rows}),
        ),
        Verdict(
            "0 lost jobs",
            all(not r.jobs.lost for r in rows),
            _where(rows, "lost job(s)", {r.scenario: len(r.jobs.lost) for r in rows}),
        ),
        Verdict(
            "0 failed requests outside declared degradations",
            all(r.unexplained == 0 for r in rows),
            _where(rows, "unexplained failure(s)", {r.scenario: r.unexplained for r in rows}),
        ),
    ]
    if (rolling := by_name.get(ROLLING_RESTART)) is not None:
        out.append(
            Verdict(
                "0 failed requests in the rolling restart",
                rolling.failed == 0,
                f"{rolling.failed} failed of {rolling.sent}",
            )
        )
    if (crash := by_name.get(INSTANCE_CRASH)) is not None:
        out.append(
            Verdict(
                "instance crash: only requests in flight on it failed",
                crash.unexplained == 0,
                f"{crash.declared} in flight on it failed, {crash.unexplained} other(s)",
            )
        )
    resets = {r.scenario: r.messages.reset for r in rows if r.scenario != REDIS_RESTART}
    lost = {r.scenario: r.messages.lost for r in rows}
    out.append(
        Verdict(
            "WebSocket: every message delivered or recovered"
            " (recovered:false only after a Redis restart)",
            not any(lost.values()) and not any(resets.values()),
            "; ".join(
                part
                for part in (
                    _where(rows, "lost message(s)", lost),
                    _where(rows, "unexpected reset(s)", resets) if any(resets.values()) else "",
                )
                if part
            ),
        )
    )
    slow = {
        r.scenario: r.back_to_normal
        for r in rows
        if r.back_to_normal is None or r.back_to_normal > BACK_TO_NORMAL_GOAL
    }
    out.append(
        Verdict(
            f"back to normal within {BACK_TO_NORMAL_GOAL:g} s of the fault ending",
            not slow,
            "; ".join(f"{name}: {_seconds(s)}" for name, s in slow.items())
            or f"every scenario within {max((r.back_to_normal or 0.0) for r in rows):.1f} s",
        )
    )
    return out


def verdict_lines(found: Sequence[Verdict]) -> str:
    return "\n".join(f"{'PASS' if v.held else 'FAIL'}  {v.promise}: {v.detail}" for v in found)


def as_json(rows: Sequence[Row], found: Sequence[Verdict], meta: dict[str, Any]) -> dict[str, Any]:
    def clean(value: Any) -> Any:
        if isinstance(value, float) and math.isinf(value):
            return None
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [clean(v) for v in value]
        return value

    return {
        "meta": meta,
        "rows": [clean(asdict(row)) for row in rows],
        "verdicts": [asdict(v) for v in found],
    }
