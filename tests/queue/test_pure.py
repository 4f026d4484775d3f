"""The queue's IO-free parts: messages, backoff, delay buckets, the delivery decision,
args checks, submission validation, pacing and the RabbitMQ declare arguments."""

from __future__ import annotations

import pytest

from app.queue.dead_letters import Pacer
from app.queue.decision import Action, decide
from app.queue.message import BadMessage, JobMessage, delay_bucket_ms, retry_delay
from app.queue.records import JobRecord
from app.queue.submission import Rejected, idempotency_key, validate
from app.queue.tasks import Field, JobContext, Task, TaskRegistry, fields, task
from app.queue.topology import Topology
from tests.support.clock import Clock

MESSAGE = JobMessage("job1", "demo.echo", {"a": 1}, attempt=2, max_attempts=3)


def record(status: str, attempts: int) -> JobRecord:
    return JobRecord(
        id="job1",
        task="demo.echo",
        args={},
        status=status,  # type: ignore[arg-type]
        attempts=attempts,
        max_attempts=3,
        result=None,
        error="boom" if status in ("failed", "dead") else None,
        idempotency_key=None,
        run_at=0.0,
        published=True,
        created_at="",
        updated_at="",
    )


def test_message_round_trips_and_refuses_what_is_not_one_of_ours() -> None:
    assert JobMessage.decode(MESSAGE.encode()) == MESSAGE
    assert MESSAGE.next_attempt().attempt == 3
    assert MESSAGE.first_attempt().attempt == 1
    for body in (
        b"{",
        b"[]",
        b'{"id": "x"}',
        b'{"id":1,"task":"t","args":{},"attempt":1,"max_attempts":1}',
        b'{"id":"x","task":"t","args":{},"attempt":0,"max_attempts":1}',
    ):
        with pytest.raises(BadMessage):
            JobMessage.decode(body)


def test_retry_delay_doubles_from_backoff_and_is_capped() -> None:
    assert [retry_delay(n, 1.0, 10.0) for n in (1, 2, 3, 4, 5)] == [1, 2, 4, 8, 10]
    assert retry_delay(1000, 0.5, 60.0) == 60.0
    assert retry_delay(3, 0.0, 60.0) == 0.0


@pytest.mark.parametrize(
    ("seconds", "ms"),
    [
        (0, 0),
        (0.05, 50),
        (0.1, 100),
        (0.123, 130),
        (1, 1000),
        (1.01, 1100),
        (12.345, 13000),
        (3600, 3600000),
        (86400.5, 87000000),
    ],
)
def test_delay_buckets_round_up_to_two_significant_figures(seconds: float, ms: int) -> None:
    assert delay_bucket_ms(seconds) == ms
    assert ms >= seconds * 1000  # never early
    assert ms <= max(100, seconds * 1000 * 1.1)  # at most ~10% late


@pytest.mark.parametrize(
    ("status", "attempts", "redeliveries", "action"),
    [
        ("failed", 1, 0, Action.RUN),  # the retry after attempt 1 failed
        ("queued", 1, 0, Action.RUN),  # attempt 2 was returned at shutdown
        ("running", 2, 1, Action.RUN),  # its worker died mid-run: run again
        ("running", 2, 5, Action.POISON),  # delivered 6 times without an outcome
        ("succeeded", 2, 0, Action.SKIP),
        ("running", 3, 0, Action.SKIP),  # stale copy: the record is past this attempt
        ("dead", 2, 0, Action.BURY),  # died at this attempt: bury again (may not have been)
        ("dead", 1, 0, Action.SKIP),
        ("failed", 2, 0, Action.RETRY),  # failure recorded, retry maybe not published
    ],
)
def test_decision(status: str, attempts: int, redeliveries: int, action: Action) -> None:
    assert decide(record(status, attempts), MESSAGE, redeliveries, 5).action is action


def test_decision_after_the_last_attempt_failed_buries_and_without_record_drops() -> None:
    last = JobMessage("job1", "demo.echo", {}, attempt=3, max_attempts=3)
    assert decide(record("failed", 3), last, 0, 5).action is Action.BURY
    assert decide(None, MESSAGE, 0, 5).action is Action.DROP


def test_fields_check_reports_every_problem() -> None:
    check = fields(n=Field(int, minimum=1), s=Field(str, required=False), x=Field(float))
    assert check({"n": 1, "x": 0.5}) == []
    assert check({"n": 0, "s": 3, "x": True, "extra": 1}) == [
        {"field": "args.extra", "message": "unknown field"},
        {"field": "args.n", "message": "expected a value >= 1"},
        {"field": "args.s", "message": "expected a string"},
        {"field": "args.x", "message": "expected a number"},
    ]
    assert check({"x": float("inf")}) == [
        {"field": "args.n", "message": "required"},
        {"field": "args.x", "message": "expected a finite number"},
    ]


async def noop(args: dict, job: JobContext) -> None:
    return None


def registry() -> TaskRegistry:
    tasks = TaskRegistry()
    tasks.add(task("t.one", args=fields(n=Field(int)))(noop), task("t.two")(noop))
    return tasks


def test_registry_refuses_a_second_task_of_one_name() -> None:
    tasks = registry()
    with pytest.raises(ValueError, match="registered twice"):
        tasks.add(Task("t.one", noop))
    assert tasks.names() == ["t.one", "t.two"]
    with pytest.raises(ValueError, match="timeout"):
        task("t.three", timeout=0)


def test_submission_defaults_and_every_problem_at_once() -> None:
    ok = validate({"task": "t.two"}, registry(), 5)
    assert (ok.task, ok.args, ok.delay, ok.max_attempts) == ("t.two", {}, 0.0, 5)
    with pytest.raises(Rejected) as caught:
        validate(
            {"task": "t.one", "args": {"n": "x"}, "delay": -1, "max_attempts": 0, "y": 1},
            registry(),
            5,
        )
    assert [p["field"] for p in caught.value.problems] == [
        "y",
        "args.n",
        "delay",
        "max_attempts",
    ]
    for body, field in [
        ([], "(body)"),
        ({}, "task"),
        ({"task": 3}, "task"),
        ({"task": "nope"}, "task"),
        ({"task": "t.two", "args": []}, "args"),
        ({"task": "t.two", "delay": True}, "delay"),
        ({"task": "t.two", "delay": 1e12}, "delay"),
        ({"task": "t.two", "max_attempts": 1.5}, "max_attempts"),
        ({"task": "t.two", "max_attempts": 101}, "max_attempts"),
    ]:
        with pytest.raises(Rejected) as caught:
            validate(body, registry(), 5)
        assert [p["field"] for p in caught.value.problems] == [field], body


def test_unknown_task_names_the_known_ones() -> None:
    with pytest.raises(Rejected) as caught:
        validate({"task": "nope"}, registry(), 5)
    assert caught.value.problems[0]["message"] == 'unknown task "nope" (known tasks: t.one, t.two)'


@pytest.mark.parametrize(
    ("header", "key"), [(None, None), ("abc", "abc"), ('"q-1"', "q-1"), (" k ", "k")]
)
def test_idempotency_key_header(header: str | None, key: str | None) -> None:
    assert idempotency_key(header) == key


@pytest.mark.parametrize("header", ["", '""', "a b", "x" * 256, "é"])
def test_malformed_idempotency_keys_are_refused(header: str) -> None:
    with pytest.raises(Rejected):
        idempotency_key(header)


def test_pacer_spaces_calls_evenly() -> None:
    clock = Clock()
    pacer = Pacer(rate=4, clock=clock)
    assert [pacer.delay() for _ in range(3)] == [0.0, 0.25, 0.5]
    clock.now += 10
    assert pacer.delay() == 0.0


def test_topology_dead_letters_at_least_once_on_quorum_and_declares_classic_plainly() -> None:
    topology = Topology("keel")
    assert (topology.main, topology.dead, topology.delay(1500)) == (
        "keel.jobs",
        "keel.dead",
        "keel.delay.1500",
    )
    main = topology.main_arguments("quorum", 7)
    assert main == {
        "x-queue-type": "quorum",
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": "keel.dead",
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
        "x-delivery-limit": 7,
    }
    assert topology.main_arguments("classic", 7) == {
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": "keel.dead",
    }
    delay = topology.delay_arguments("quorum", 1500)
    assert delay["x-dead-letter-routing-key"] == "keel.jobs"
    assert delay["x-message-ttl"] == 1500
    assert delay["x-expires"] > 1500
    assert topology.is_delay("keel.delay.1500")
    assert not topology.is_delay("keel.jobs")
