"""One row of the report per scenario, out of the ledger.

A row counts what *started* in its window: requests sent, jobs accepted and
messages acknowledged from the window's start until the next window's. Each
failed request is either explained by the scenario (a declared degradation:
503 `unavailable` for the keys of the shard that is down; a request in flight
on the instance that was killed) or not.

Back to normal: the last moment, after the fault ended, at which a client saw
something it does not see in normal running — a failed or slow request, a
stale read, a job that took long to complete (or never did), a message that
arrived late (or never) — minus the fault's end. "Slow" and "late" are
thresholds the run derives from its baseline (see `Thresholds`).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from bench.fault_report.ledger import (
    JobCount,
    Ledger,
    MessageCount,
    Request,
    StaleRead,
    count_jobs,
    count_messages,
    stale_reads,
)

# Returns why a failed request was to be expected in this scenario, or None.
Explain = Callable[[Request], str | None]


@dataclass(frozen=True)
class Window:
    scenario: str
    start: float
    end: float
    fault_start: float
    fault_end: float


@dataclass(frozen=True)
class Thresholds:
    """Beyond these (seconds), a request is slow and a job or message late."""

    request: float
    job: float
    message: float


@dataclass(frozen=True)
class Row:
    scenario: str
    fault: str
    sent: int
    ok: int  # 2xx (and 3xx)
    client_errors: int  # 4xx
    errors: dict[str, int]  # "503 unavailable": n, ..., "no answer": n
    declared: int  # failed requests the scenario explains
    unexplained: int  # failed requests it does not
    explained_by: dict[str, int]  # why, for the declared ones
    unexplained_by: dict[str, int]  # label ("502 bad_gateway", "no answer") of the others
    stale: int
    jobs: JobCount
    messages: MessageCount
    back_to_normal: float | None  # seconds after the fault ended; None: never within the run
    last_to_recover: str  # which figure set back_to_normal
    slow_requests: int
    fault_seconds: float
    notes: tuple[str, ...] = field(default=())

    @property
    def failed(self) -> int:
        return self.declared + self.unexplained


def label(request: Request) -> str:
    if request.status is None:
        return "no answer"
    return f"{request.status} {request.code}".strip()


def _describe_stale(stale: StaleRead, window: Window) -> str:
    """Where a stale read sat in time, relative to the fault's start (negative: before)."""

    def at(t: float) -> str:
        return f"{t - window.fault_start:+.3f} s"

    read, newer = stale.read, stale.newer
    return (
        f"stale read of {read.item}: version {read.version} in {at(read.started)}..{at(read.ended)}"
        f", version {newer.version} acknowledged at {at(newer.acked)} (fault from +0 to"
        f" {at(window.fault_end)})"
    )


def row_for(
    ledger: Ledger,
    window: Window,
    *,
    fault: str,
    explain: Explain,
    thresholds: Thresholds,
    notes: tuple[str, ...] = (),
) -> Row:
    def inside(t: float) -> bool:
        return window.start <= t < window.end

    requests = [r for r in ledger.requests if inside(r.started)]
    errors: Counter[str] = Counter()
    explained_by: Counter[str] = Counter()
    unexplained_by: Counter[str] = Counter()
    for request in requests:
        if request.failed:
            errors[label(request)] += 1
            reason = explain(request)
            if reason is None:
                unexplained_by[label(request)] += 1
            else:
                explained_by[reason] += 1
    ok = sum(1 for r in requests if r.status is not None and r.status < 400)
    client_errors = sum(
        1 for r in requests if r.status is not None and 400 <= r.status < 500 and not r.failed
    )
    reads = [r for r in ledger.reads if inside(r.started)]
    stale = stale_reads(ledger.writes, reads)
    accepted = {job: at for job, at in ledger.jobs.items() if inside(at)}
    jobs = count_jobs(accepted, ledger.job_ends)
    published = [m for m in ledger.published if inside(m.acked)]
    messages = count_messages(published, ledger.received, ledger.subscriptions.values())

    # What clients saw that is not normal, and when they stopped seeing it.
    moments: list[tuple[float, str]] = []
    moments += [(r.ended, "requests") for r in requests if r.failed]
    slow = [r for r in requests if not r.failed and r.seconds > thresholds.request]
    moments += [(r.ended, "latency") for r in slow]
    moments += [(s.read.ended, "stale reads") for s in stale]
    for job, at in accepted.items():
        end = ledger.job_ends.get(job)
        if end is None or end.status != "succeeded":
            moments.append((math.inf, "jobs"))
        elif end.at - at > thresholds.job:
            moments.append((end.at, "jobs"))
    arrivals: dict[tuple[str, str], float] = {}
    for arrival in ledger.received:
        arrivals.setdefault((arrival.subscriber, arrival.key), arrival.at)
    for message in published:
        for subscription in ledger.subscriptions.values():
            if subscription.since > message.acked:
                continue
            arrived = arrivals.get((subscription.name, message.key))
            if arrived is None:
                told = [t for t in subscription.resets if t >= message.sent]
                moments.append((min(told) if told else math.inf, "websocket"))
            elif arrived - message.acked > thresholds.message:
                moments.append((arrived, "websocket"))
    for read in stale:
        notes = (*notes, _describe_stale(read, window))
    refused = sum(1 for t in ledger.refused if inside(t))
    if refused:
        notes = (*notes, f"{refused} WebSocket publish(es) refused: the publisher was told")
    after = [(t, what) for t, what in moments if t > window.fault_end]
    if after:
        latest, what = max(after)
        back: float | None = None if math.isinf(latest) else latest - window.fault_end
    else:
        back, what = 0.0, ""
    return Row(
        scenario=window.scenario,
        fault=fault,
        sent=len(requests),
        ok=ok,
        client_errors=client_errors,
        errors=dict(errors),
        declared=sum(explained_by.values()),
        unexplained=sum(unexplained_by.values()),
        explained_by=dict(explained_by),
        unexplained_by=dict(unexplained_by),
        stale=len(stale),
        jobs=jobs,
        messages=messages,
        back_to_normal=back,
        last_to_recover=what,
        slow_requests=len(slow),
        fault_seconds=window.fault_end - window.fault_start,
        notes=notes,
    )
