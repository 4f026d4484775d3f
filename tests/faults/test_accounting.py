"""The fault report's accounting, fed histories made up to be wrong: it must flag them.

A report that cannot see a stale read or a lost job proves nothing; these
histories have one each (and messages lost, unexplained failures, a late
recovery), and the accounting must name them — and must not flag what is fine.
"""

from __future__ import annotations

import math

from bench.fault_report.figures import Thresholds, Window, row_for
from bench.fault_report.ledger import (
    JobEnd,
    Ledger,
    Published,
    Read,
    Received,
    Request,
    Subscription,
    Write,
    count_jobs,
    count_messages,
    stale_reads,
)
from bench.fault_report.report import markdown, verdict_lines, verdicts
from bench.fault_report.scenarios import shard_down

LIMITS = Thresholds(request=1.0, job=2.0, message=1.0)


def test_a_read_older_than_a_write_acknowledged_before_it_began_is_stale() -> None:
    writes = [Write("a", 1, 1.0), Write("a", 2, 5.0), Write("b", 7, 1.0)]
    reads = [
        Read("a", 1, 4.0, 4.1),  # v2 not acknowledged yet: fine
        Read("a", 1, 4.9, 5.2),  # began before the ack: concurrent, fine
        Read("a", 1, 5.5, 5.6),  # began after v2's ack, returned v1: stale
        Read("a", 3, 6.0, 6.1),  # newer than anything acknowledged: fine
        Read("b", 7, 2.0, 2.1),
    ]
    stale = stale_reads(writes, reads)
    assert [(s.read.started, s.newer.version) for s in stale] == [(5.5, 2)]


def test_a_not_found_after_an_acknowledged_create_is_stale() -> None:
    writes = [Write("new", 1, 3.0)]
    reads = [Read("new", 0, 2.0, 2.1), Read("new", 0, 3.5, 3.6)]  # 404 before, 404 after
    assert [s.read.started for s in stale_reads(writes, reads)] == [3.5]


def test_writes_acknowledged_out_of_version_order_still_count_the_newest() -> None:
    # v3's answer reached its writer before v2's did: a read after both must see v3.
    writes = [Write("a", 3, 2.0), Write("a", 2, 2.5)]
    assert len(stale_reads(writes, [Read("a", 2, 3.0, 3.1)])) == 1


def test_an_accepted_job_never_seen_succeeded_is_lost() -> None:
    accepted = {"done": 1.0, "stuck": 1.0, "dead": 1.0, "gone": 1.0, "unasked": 1.0}
    ends = {
        "done": JobEnd("succeeded", 1.3),
        "stuck": JobEnd("running", 60.0),
        "dead": JobEnd("dead", 2.0),
        "gone": JobEnd("missing", 2.0),
    }
    counted = count_jobs(accepted, ends)
    assert (counted.accepted, counted.completed) == (5, 1)
    assert set(counted.lost) == {"stuck", "dead", "gone", "unasked"}
    assert counted.ends["unasked"] == "never asked"
    assert counted.ends["stuck"] == "running"


def test_messages_delivered_recovered_reset_and_lost() -> None:
    subscriptions = [
        Subscription("live", 0.0),
        Subscription("back", 0.0),
        Subscription("told", 0.0, resets=(5.0,)),
        Subscription("late", 3.0),  # subscribed after the first message
    ]
    published = [
        Published("m1", 1.0, 0.9, {"live": 0, "back": 0, "told": 0}),
        Published("m2", 4.0, 3.9, {"live": 0, "back": 0, "told": 0, "late": 0}),
    ]
    received = [
        Received("live", "m1", 1.01, 0),
        Received("live", "m2", 4.01, 0),
        Received("back", "m1", 1.01, 0),
        Received("back", "m2", 6.0, 1),  # after a replay it asked for since m2's ack
        Received("late", "m2", 4.01, 0),
        # "told" got neither, but was told (recovered: false) after both were sent.
    ]
    counted = count_messages(published, received, subscriptions)
    assert (counted.published, counted.expected) == (2, 7)
    assert (counted.delivered, counted.recovered, counted.reset, counted.lost) == (4, 1, 2, 0)

    # "late" never gets m2: lost, and named.
    counted = count_messages(published, received[:-1], subscriptions)
    assert counted.lost == 1
    assert counted.missing == (("late", "m2"),)


def _ledger() -> Ledger:
    """A window of 0..100 with a fault from 10 to 20; everything fine unless added."""
    ledger = Ledger()
    for n in range(50):
        t = 1.0 + n
        ledger.requests.append(Request("read", "GET", "/api/items/a", t, t + 0.01, 200))
    return ledger


WINDOW = Window("broken", 0.0, 100.0, 10.0, 20.0)


def test_a_clean_window_is_back_to_normal_at_once() -> None:
    ledger = _ledger()
    ledger.refused.append(15.0)  # a publish answered with an error: a note, not a loss
    row = row_for(ledger, WINDOW, fault="f", explain=lambda r: None, thresholds=LIMITS)
    assert (row.sent, row.ok, row.failed, row.stale, row.back_to_normal) == (50, 50, 0, 0, 0.0)
    assert row.notes == ("1 WebSocket publish(es) refused: the publisher was told",)


def test_failures_are_explained_by_the_scenario_or_not() -> None:
    ledger = _ledger()
    down = Request("read", "GET", "/api/items/x", 12.0, 12.01, 503, "unavailable", "shard.1")
    other = Request("read", "GET", "/api/items/y", 13.0, 13.01, 503, "unavailable", "shard.0")
    crash = Request("write", "PUT", "/api/items/z", 14.0, 14.01, 502, "bad_gateway")
    gone = Request("list", "GET", "/api/items", 23.5, 26.0, None, error="reset")
    ledger.requests += [down, other, crash, gone]
    row = row_for(ledger, WINDOW, fault="f", explain=shard_down, thresholds=LIMITS)
    assert (row.declared, row.unexplained) == (1, 3)
    assert row.explained_by == {"503 unavailable for shard.1's keys": 1}
    assert row.unexplained_by == {
        "503 unavailable": 1,
        "502 bad_gateway": 1,
        "no answer": 1,
    }
    # The last failure ended 6 s after the fault did.
    assert row.back_to_normal == 6.0
    assert row.last_to_recover == "requests"


def test_a_stale_read_a_lost_job_and_a_lost_message_all_show_in_the_row() -> None:
    ledger = _ledger()
    ledger.writes.append(Write("a", 2, 11.0))
    ledger.reads.append(Read("a", 1, 12.0, 12.1))
    ledger.jobs.update({"ok": 11.0, "slow": 12.0, "lost": 13.0})
    ledger.job_ends.update({"ok": JobEnd("succeeded", 11.3), "slow": JobEnd("succeeded", 23.0)})
    ledger.subscribed("s", 0.0)
    ledger.published.append(Published("m", 15.0, 14.9, {"s": 0}))
    row = row_for(ledger, WINDOW, fault="f", explain=lambda r: None, thresholds=LIMITS)
    assert row.stale == 1
    assert (row.jobs.accepted, row.jobs.completed, row.jobs.lost) == (3, 2, ("lost",))
    assert (row.messages.published, row.messages.lost) == (1, 1)
    assert row.back_to_normal is None  # a lost job, a lost message: never back
    found = {v.promise: v for v in verdicts([row])}
    assert not found["0 stale reads"].held
    assert not found["0 lost jobs"].held
    assert "1 lost job(s) in broken" in found["0 lost jobs"].detail
    lines = verdict_lines(list(found.values()))
    assert "FAIL  0 stale reads: 1 stale read(s) in broken" in lines
    assert "| broken | f | 50 |" in markdown([row])


def test_a_late_job_sets_the_time_back_to_normal() -> None:
    ledger = _ledger()
    ledger.jobs["slow"] = 12.0
    ledger.job_ends["slow"] = JobEnd("succeeded", 27.5)  # 15.5 s: late; done 7.5 s after
    row = row_for(ledger, WINDOW, fault="f", explain=lambda r: None, thresholds=LIMITS)
    assert row.back_to_normal == 7.5
    assert row.last_to_recover == "jobs"
    held = {v.promise: v.held for v in verdicts([row])}
    assert held["back to normal within 5 s of the fault ending"] is False


def test_requests_slower_than_the_threshold_are_not_normal() -> None:
    ledger = _ledger()
    ledger.requests.append(Request("read", "GET", "/api/items/a", 19.0, 21.5, 200))
    row = row_for(ledger, WINDOW, fault="f", explain=lambda r: None, thresholds=LIMITS)
    assert (row.slow_requests, row.failed) == (1, 0)
    assert math.isclose(row.back_to_normal or 0, 1.5)
