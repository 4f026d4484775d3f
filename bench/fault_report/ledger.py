"""What the clients saw, and the accounting over it.

The load generator records every request it sends (`Request`), every write a
server acknowledged (`Write`: the item's version and when the client had the
answer), every read of an item (`Read`), every job accepted with 202 and what
became of it, and every WebSocket message published and received. Nothing
here does IO: the accounting is tested on histories made up to be wrong.

A read is *stale* when it returned a version older than one acknowledged to a
writer before the read began: the writer had its answer, so any reader who
started later must see that version or a newer one. A 404 of an item reads as
version 0.

A job is *lost* when it was accepted (202) but never succeeded: it was not
found again, ended dead, or was still unfinished when the report stopped
waiting.

Times are `time.time()` seconds: the servers' own timestamps (a job's
`updated_at`) come from the same clock on this machine.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Request:
    """One HTTP request and its answer (`status` None: no HTTP answer at all)."""

    kind: str  # read | write | create | list | job
    method: str
    path: str
    started: float
    ended: float
    status: int | None
    code: str = ""  # the error body's code ("unavailable", "bad_gateway", ...)
    shard: str = ""  # details.shard of a 503 unavailable
    request_id: str = ""
    error: str = ""  # the exception, when there was no answer

    @property
    def seconds(self) -> float:
        return self.ended - self.started

    @property
    def failed(self) -> bool:
        """No answer, or an answer a well-behaved client of this load never expects."""
        return self.status is None or self.status >= 500 or self.status in (408, 429)


@dataclass(frozen=True, slots=True)
class Write:
    item: str
    version: int
    acked: float


@dataclass(frozen=True, slots=True)
class Read:
    item: str
    version: int  # 0: not found
    started: float
    ended: float


@dataclass(frozen=True, slots=True)
class StaleRead:
    read: Read
    newer: Write  # the acknowledged write the read should have seen


def stale_reads(writes: Iterable[Write], reads: Iterable[Read]) -> list[StaleRead]:
    """Every read that returned a version older than one acknowledged before it began."""
    by_item: dict[str, list[Write]] = defaultdict(list)
    for write in writes:
        by_item[write.item].append(write)
    # Per item: acknowledgement times in order, and the newest write acknowledged by each.
    acked_times: dict[str, list[float]] = {}
    newest_by: dict[str, list[Write]] = {}
    for item, item_writes in by_item.items():
        item_writes.sort(key=lambda w: w.acked)
        acked_times[item] = [w.acked for w in item_writes]
        newest: list[Write] = []
        for write in item_writes:
            newest.append(write if not newest or write.version > newest[-1].version else newest[-1])
        newest_by[item] = newest
    stale: list[StaleRead] = []
    for read in reads:
        times = acked_times.get(read.item)
        if not times:
            continue
        before = bisect.bisect_left(times, read.started)  # writes acknowledged before it began
        if before and (should_see := newest_by[read.item][before - 1]).version > read.version:
            stale.append(StaleRead(read, should_see))
    return stale


@dataclass(frozen=True, slots=True)
class JobEnd:
    """What the API last said of a job: `status` (or "missing" for a 404) and when."""

    status: str
    at: float  # the record's updated_at once succeeded; else when it was last asked


@dataclass(frozen=True, slots=True)
class JobCount:
    accepted: int
    completed: int
    lost: tuple[str, ...]  # ids
    ends: Mapping[str, str] = field(default_factory=dict)  # status of each lost one


def count_jobs(accepted: Mapping[str, float], ends: Mapping[str, JobEnd]) -> JobCount:
    """Accepted jobs that succeeded, and those lost: never seen succeeded."""
    completed = 0
    lost: list[str] = []
    lost_ends: dict[str, str] = {}
    for job_id in accepted:
        end = ends.get(job_id)
        if end is not None and end.status == "succeeded":
            completed += 1
        else:
            lost.append(job_id)
            lost_ends[job_id] = end.status if end is not None else "never asked"
    return JobCount(len(accepted), completed, tuple(lost), lost_ends)


@dataclass(frozen=True, slots=True)
class Published:
    """A message the server acknowledged (`ok`) to its publisher."""

    key: str  # "<publisher>:<sequence>", the message's data
    acked: float
    # When the publisher sent it: a Reset a subscriber gets after that covers it
    # (the server may have numbered it before the ack reached the publisher).
    sent: float = 0.0
    # Each subscriber's count of replays asked for (subscribes with `since`) when
    # the ack came: a message received after a later replay came by recovery.
    replays: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Received:
    subscriber: str
    key: str
    at: float
    replays: int  # the subscriber's count of replays asked for when it arrived


@dataclass(frozen=True, slots=True)
class Subscription:
    """A subscriber, from when its first subscription was confirmed; its resets."""

    name: str
    since: float
    resets: tuple[float, ...] = ()  # when it was told recovered:false


@dataclass(frozen=True, slots=True)
class MessageCount:
    published: int
    expected: int  # published x subscribers subscribed at the time
    delivered: int  # received live
    recovered: int  # received after a replay asked for since it was acked
    reset: int  # missed, and the subscriber was told (recovered:false)
    lost: int  # missed without a word
    latest: float | None  # when the last expected message arrived (None: none did)
    missing: tuple[tuple[str, str], ...] = ()  # (subscriber, key) of each lost one


def count_messages(
    published: Iterable[Published],
    received: Iterable[Received],
    subscriptions: Iterable[Subscription],
) -> MessageCount:
    """Each published message at each subscriber subscribed when it was acknowledged."""
    got: dict[tuple[str, str], Received] = {}
    for arrival in received:
        got.setdefault((arrival.subscriber, arrival.key), arrival)
    subscribers = list(subscriptions)
    total = expected = delivered = recovered = reset = 0
    missing: list[tuple[str, str]] = []
    latest: float | None = None
    for message in published:
        total += 1
        for subscriber in subscribers:
            if subscriber.since > message.acked:
                continue
            expected += 1
            got_it = got.get((subscriber.name, message.key))
            if got_it is not None:
                latest = got_it.at if latest is None else max(latest, got_it.at)
                if got_it.replays > message.replays.get(subscriber.name, 0):
                    recovered += 1
                else:
                    delivered += 1
            elif any(at >= message.sent for at in subscriber.resets):
                reset += 1
            else:
                missing.append((subscriber.name, message.key))
    return MessageCount(
        total, expected, delivered, recovered, reset, len(missing), latest, tuple(missing)
    )


@dataclass
class Ledger:
    """Everything the clients saw in one run, appended to as it happens."""

    requests: list[Request] = field(default_factory=list)
    writes: list[Write] = field(default_factory=list)
    reads: list[Read] = field(default_factory=list)
    jobs: dict[str, float] = field(default_factory=dict)  # id -> when it was accepted
    job_ends: dict[str, JobEnd] = field(default_factory=dict)
    published: list[Published] = field(default_factory=list)
    refused: list[float] = field(default_factory=list)  # publishes answered with an error
    received: list[Received] = field(default_factory=list)
    subscriptions: dict[str, Subscription] = field(default_factory=dict)

    def subscribed(self, name: str, at: float) -> None:
        if name not in self.subscriptions:
            self.subscriptions[name] = Subscription(name, at)

    def reset(self, name: str, at: float) -> None:
        subscription = self.subscriptions[name]
        self.subscriptions[name] = Subscription(
            name, subscription.since, (*subscription.resets, at)
        )
