"""The run: start the rig, load it, break each dependency in turn, print the report.

Timeline: the rig starts; the hot set is seeded; the load, the job tracker and
the WebSocket clients start; after a warm-up a baseline window measures the
figures without a fault (its latencies set the thresholds of "slow" and
"late"); then each scenario has a window of its own: a lead-in, the fault,
`--observe` seconds after it, and until the jobs accepted so far have
finished (at most `SETTLE_TIMEOUT`). The next window starts where one ends,
so every request sent belongs to exactly one row. At the end the load stops,
the report waits for the last jobs, and the rig is taken down.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.fault_report.figures import Row, Thresholds, Window, row_for
from bench.fault_report.jobs import JobTracker
from bench.fault_report.ledger import Ledger
from bench.fault_report.load import HttpLoad, Rates
from bench.fault_report.report import as_json, markdown, table, verdict_lines, verdicts
from bench.fault_report.rig import Rig, RigOptions
from bench.fault_report.scenarios import BY_NAME, SCENARIOS, Fault, Scenario, nothing_explained
from bench.fault_report.sockets import SocketLoad

WARM_UP = 3.0
LEAD_IN = 2.0
SETTLE_TIMEOUT = 30.0
FINAL_TIMEOUT = 60.0
EXIT_HELD, EXIT_BROKEN_PROMISE, EXIT_NO_REPORT = 0, 1, 2


@dataclass(frozen=True)
class Options:
    scenarios: tuple[Scenario, ...]
    fault_seconds: float
    observe: float
    baseline: float
    instances: int
    workers: int
    items: int
    rate: float
    json_path: Path | None
    keep: bool
    pg_admin_url: str
    amqp_url: str


def parse(argv: list[str]) -> Options:
    from tests.support.services import AMQP_URL, PG_ADMIN_URL

    parser = argparse.ArgumentParser(
        prog="bench/faults.py",
        description="Break each dependency of a Keel cluster under load; report what clients saw.",
    )
    parser.add_argument(
        "--only",
        default="",
        help="comma-separated scenarios (default: all): " + ", ".join(BY_NAME),
    )
    parser.add_argument("--fault-seconds", type=float, default=10.0, help="how long a fault lasts")
    parser.add_argument(
        "--observe", type=float, default=10.0, help="seconds watched after each fault"
    )
    parser.add_argument("--baseline", type=float, default=8.0, help="seconds without a fault")
    parser.add_argument("--instances", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--items", type=int, default=200, help="items in the hot set")
    parser.add_argument("--rate", type=float, default=1.0, help="scales the load's rates")
    parser.add_argument("--json", type=Path, default=None, help="also write the report here")
    parser.add_argument("--keep", action="store_true", help="keep the logs' directory")
    parser.add_argument("--pg", default=PG_ADMIN_URL, help="PostgreSQL maintenance database")
    parser.add_argument("--amqp", default=AMQP_URL, help="RabbitMQ")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in BY_NAME]
    if unknown:
        parser.error(f"unknown scenario(s) {', '.join(unknown)}; known: {', '.join(BY_NAME)}")
    chosen = tuple(BY_NAME[n] for n in names) if names else SCENARIOS
    return Options(
        chosen,
        args.fault_seconds,
        args.observe,
        args.baseline,
        args.instances,
        args.workers,
        args.items,
        args.rate,
        args.json,
        args.keep,
        args.pg,
        args.amqp,
    )


class Clock:
    """Progress lines on stderr, timed from the start of the run."""

    def __init__(self) -> None:
        self.start = time.monotonic()

    def say(self, text: str) -> None:
        print(f"[{time.monotonic() - self.start:6.1f}s] {text}", file=sys.stderr, flush=True)


def p99(values: list[float]) -> float:
    if len(values) < 2:
        return values[0] if values else 0.0
    return statistics.quantiles(values, n=100, method="inclusive")[98]


def thresholds(ledger: Ledger, window: Window) -> Thresholds:
    """Slow/late: 4x the baseline's p99, and never under 1 s (requests, messages), 2 s (jobs)."""
    requests = [r.seconds for r in ledger.requests if window.start <= r.started < window.end]
    jobs = [
        end.at - at
        for job, at in ledger.jobs.items()
        if window.start <= at < window.end
        and (end := ledger.job_ends.get(job)) is not None
        and end.status == "succeeded"
    ]
    arrivals: dict[tuple[str, str], float] = {}
    for arrival in ledger.received:
        arrivals.setdefault((arrival.subscriber, arrival.key), arrival.at)
    messages = [
        arrivals[(s, m.key)] - m.acked
        for m in ledger.published
        if window.start <= m.acked < window.end
        for s in ledger.subscriptions
        if (s, m.key) in arrivals
    ]
    return Thresholds(
        request=max(1.0, 4 * p99(requests)),
        job=max(2.0, 4 * p99(jobs)),
        message=max(1.0, 4 * p99(messages)),
    )


Windows = list[tuple[Scenario | None, Fault, Window]]


async def measure(options: Options, clock: Clock, workdir: Path) -> tuple[Ledger, Windows]:
    run_id = uuid.uuid4().hex[:8]
    rig_options = RigOptions(
        options.pg_admin_url, options.amqp_url, options.instances, options.workers
    )
    ledger = Ledger()
    clock.say(f"starting: private Redis, proxies, {options.instances} instances behind nginx")
    async with Rig(workdir, run_id, rig_options) as rig:
        clock.say(f"cluster ready at {rig.url}; {options.workers} worker(s); seeding")
        load = HttpLoad(rig.url, ledger, run_id, Rates().scaled(options.rate))
        await load.seed(options.items)
        tracker = JobTracker(rig.url, ledger)
        sockets = SocketLoad(rig.url, ledger, f"chat.faults-{run_id}", rate=10.0 * options.rate)
        tracker.start()
        await sockets.start()
        load.start()
        try:
            await asyncio.sleep(WARM_UP)
            clock.say(f"baseline: {options.baseline:g} s without a fault")
            start = time.time()
            await asyncio.sleep(options.baseline)
            baseline = Fault(start, start)
            await tracker.settle(start, SETTLE_TIMEOUT)
            windows: Windows = []
            windows.append((None, baseline, Window("baseline", start, time.time(), start, start)))
            for scenario in options.scenarios:
                start = time.time()
                await asyncio.sleep(LEAD_IN)
                clock.say(f"{scenario.name}: {scenario.fault.format(hold=options.fault_seconds)}")
                fault = await scenario.run(rig, options.fault_seconds)
                clock.say(f"{scenario.name}: fault over after {fault.ended - fault.started:.1f} s")
                await asyncio.sleep(options.observe)
                if not await tracker.settle(start, SETTLE_TIMEOUT):
                    clock.say(f"{scenario.name}: jobs still unfinished after {SETTLE_TIMEOUT:g} s")
                window = Window(scenario.name, start, time.time(), fault.started, fault.ended)
                windows.append((scenario, fault, window))
        finally:
            await load.stop()
            await sockets.stop()
        clock.say("load stopped; waiting for the last jobs")
        await tracker.settle(0.0, FINAL_TIMEOUT)
        await tracker.stop()
        clock.say("stopping the rig")
    return ledger, windows


def rows_of(ledger: Ledger, windows: Windows, options: Options) -> list[Row]:
    """The baseline's row first (its latencies set the thresholds), then each scenario's."""
    limits = thresholds(ledger, windows[0][2])
    rows = []
    for chosen, fault, window in windows:
        described = chosen.fault.format(hold=options.fault_seconds) if chosen else "none"
        explain = fault.explain if chosen else nothing_explained
        notes = tuple(fault.notes)
        rows.append(
            row_for(
                ledger, window, fault=described, explain=explain, thresholds=limits, notes=notes
            )
        )
    return rows


def meta(options: Options, argv: list[str], started: datetime, seconds: float) -> dict[str, Any]:
    return {
        "date": started.strftime("%Y-%m-%d %H:%M UTC"),
        "command": shlex.join(["python", "bench/faults.py", *argv]),
        "seconds": round(seconds, 1),
        "machine": f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}",
        "python": platform.python_version(),
        "fault_seconds": options.fault_seconds,
        "instances": options.instances,
        "workers": options.workers,
    }


def main(argv: list[str]) -> int:
    options = parse(argv)
    clock = Clock()
    started = datetime.now(UTC)
    workdir = Path(tempfile.mkdtemp(prefix="keel-faults-"))
    try:
        ledger, windows = asyncio.run(measure(options, clock, workdir))
    except Exception as exc:  # noqa: BLE001 - any failure of the run: say what, where the logs are
        print(f"faults: the run failed: {exc!r}; logs in {workdir}", file=sys.stderr)
        return EXIT_NO_REPORT
    if not options.keep:
        import shutil

        shutil.rmtree(workdir, ignore_errors=True)
    rows = rows_of(ledger, windows, options)
    scenario_rows = [row for row in rows if row.scenario != "baseline"]
    found = verdicts(scenario_rows)
    info = meta(options, argv, started, time.monotonic() - clock.start)
    print(f"\nKeel fault report, {info['date']} ({info['machine']}): {info['command']}\n")
    print(table(rows))
    print()
    for row in rows:
        for note in row.notes:
            print(f"{row.scenario}: {note}")
    print()
    print(verdict_lines(found))
    print("\nMarkdown:\n")
    print(markdown(rows))
    if options.json_path is not None:
        options.json_path.write_text(json.dumps(as_json(rows, found, info), indent=2) + "\n")
    return EXIT_HELD if all(v.held for v in found) else EXIT_BROKEN_PROMISE
