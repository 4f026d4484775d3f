"""Jobs benchmark: jobs/s end to end through Keel, against bare aiormq, in one run.

Three scenarios, each measured ``--rounds`` times (medians reported): jobs/s,
the ratio to ``bare-aiormq`` in the same round, p50/p99 submit latency (the
confirm, or Keel's 202), p50/p99 end-to-end latency (submit to done) and, for
Keel, shard write transactions per job (``keel_shard_transactions_total``).

- ``bare-aiormq``: the reference — one aiormq connection publishing persistent
  messages to a durable quorum queue with publisher confirms (``--concurrency``
  publishes in flight) while a consumer (prefetch 16) acks each; time from the
  first publish to the last ack. Submit latency: publish to confirm; end to
  end: publish to the consumer's ack.
- ``keel-rabbitmq``: ``run.py serve`` (default plugins, consuming itself) on the
  same RabbitMQ: ``--concurrency`` clients submit ``demo.echo`` over HTTP
  (``POST /api/jobs``: record on a shard, publish, confirm, 202), Keel runs each
  and records it succeeded; time from the first submit until Keel's
  ``keel_jobs_total{status="succeeded"}`` counts them all. Every job's status
  is then checked over HTTP (untimed); its end-to-end latency is its record's
  ``updated_at`` (when it was recorded succeeded) minus when its POST was sent.
- ``keel-embedded``: the same on the embedded SQLite queue.

The summary also gives each Keel scenario's CPU per job over bare's (median of
the rounds): steadier than jobs/s when the machine is shared.

Keel runs pinned to CPU core 0, this script to core 1 (RabbitMQ is not pinned:
it stands for another machine). A report, not a test: exit 1 only when there is
no figure (a server failed, a job did not succeed).

    python bench/jobs.py [--jobs 2000] [--concurrency 64] [--rounds 3] [--only keel-embedded]
"""

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import aiohttp
import aiormq
from pamqp import commands as spec

REPO_ROOT = Path(__file__).resolve().parent.parent
AMQP_URL = os.environ.get("KEEL_BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
SERVER_CORE, CLIENT_CORE = 0, 1
START_TIMEOUT = 30.0
RUN_TIMEOUT = 300.0
WARMUP_JOBS = 200
SCENARIOS = ("bare-aiormq", "keel-rabbitmq", "keel-embedded")
TARGET = 0.5  # Keel's jobs/s as a share of bare-aiormq's (issue 19)
_SUCCEEDED = re.compile(
    r'^keel_jobs_total\{status="succeeded",task="demo.echo"\} ([\d.e+]+)$', re.M
)
_TRANSACTIONS = re.compile(r'^keel_shard_transactions_total\{shard="[^"]*"\} ([\d.e+]+)$', re.M)


@dataclass(frozen=True)
class Figures:
    """One scenario in one round. Latencies in milliseconds."""

    jobs_per_sec: float
    submit_p50: float
    submit_p99: float
    end_to_end_p50: float
    end_to_end_p99: float
    transactions_per_job: float | None = None
    # CPU time of the process doing the work (Keel; for bare, this script's client),
    # per job: steadier than jobs/s on a shared machine, and what a change to Keel moves.
    cpu_us_per_job: float | None = None


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def figures(
    jobs: int,
    elapsed: float,
    submits: Sequence[float],
    ends: Sequence[float],
    tx: float | None,
    cpu_seconds: float,
) -> Figures:
    """Latencies in seconds in, milliseconds out."""
    return Figures(
        jobs / elapsed,
        percentile(submits, 0.5) * 1000,
        percentile(submits, 0.99) * 1000,
        percentile(ends, 0.5) * 1000,
        percentile(ends, 0.99) * 1000,
        tx,
        cpu_seconds / jobs * 1e6,
    )


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid`, all its threads (Linux `/proc`)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class BenchError(Exception):
    """No figure: a server or a job failed."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def pin(core: int) -> str:
    """Run this process on `core` when the machine has it; say what happened."""
    try:
        os.sched_setaffinity(0, {core})
    except (AttributeError, OSError) as exc:
        return f"not pinned ({exc})"
    return f"core {core}"


# --- the reference: bare aiormq ---------------------------------------------------


async def bare_aiormq(jobs: int, concurrency: int) -> Figures:
    """Messages/s: publish with confirm, consume, ack — the floor of any job queue."""
    queue = f"keel-bench-bare-{os.getpid()}"
    connection = await aiormq.connect(AMQP_URL)
    try:
        publisher = await connection.channel()
        await publisher.queue_declare(queue, durable=True, arguments={"x-queue-type": "quorum"})
        consumer = await connection.channel()
        await consumer.basic_qos(prefetch_count=16)
        done = asyncio.Event()
        sent: dict[int, float] = {}
        ends: list[float] = []

        async def on_message(message: aiormq.abc.DeliveredMessage) -> None:
            assert isinstance(message.delivery, spec.Basic.Deliver)
            await consumer.basic_ack(message.delivery.delivery_tag)
            ends.append(time.perf_counter() - sent[json.loads(message.body)["args"]["n"]])
            if len(ends) == jobs:
                done.set()

        consuming = await consumer.basic_consume(queue, on_message)
        properties = spec.Basic.Properties(delivery_mode=2, content_type="application/json")
        slots = asyncio.Semaphore(concurrency)
        submits: list[float] = []

        async def publish(n: int) -> None:
            body = json.dumps({"task": "demo.echo", "args": {"n": n}}).encode()
            async with slots:
                sent[n] = time.perf_counter()
                confirm = await publisher.basic_publish(
                    body, routing_key=queue, mandatory=True, properties=properties
                )
                submits.append(time.perf_counter() - sent[n])
                if not isinstance(confirm, spec.Basic.Ack):
                    raise BenchError(f"bare publish not confirmed: {confirm!r}")

        started, cpu_before = time.perf_counter(), time.process_time()
        await asyncio.gather(*(publish(n) for n in range(jobs)))
        async with asyncio.timeout(RUN_TIMEOUT):
            await done.wait()
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_before
        assert consuming.consumer_tag is not None
        await consumer.basic_cancel(consuming.consumer_tag)
        await publisher.queue_delete(queue)
        return figures(jobs, elapsed, submits, ends, None, cpu)
    finally:
        await connection.close()


# --- Keel ---------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def keel_server(
    name: str, work_dir: Path, env: dict[str, str]
) -> AsyncIterator[tuple[str, int]]:
    """The server's URL and pid."""
    port = free_port()
    log = work_dir / f"{name}.log"
    settings = {
        **{k: v for k, v in os.environ.items() if not k.startswith("KEEL_")},
        "KEEL_SERVER__DATA_DIR": str(work_dir / f"{name}-data"),
        "KEEL_SERVER__DRAIN_DELAY": "0",
        "KEEL_LOGGING__LEVEL": "warning",
        "KEEL_LOGGING__ACCESS_LOG": "false",
        "KEEL_RATELIMIT__DEFAULT": "1000000000/second",
        **env,
    }
    command = ["run.py", "serve", "--host", "127.0.0.1", "--port", str(port)]
    taskset = ["taskset", "-c", str(SERVER_CORE)] if _has_taskset() else []
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            *taskset,
            sys.executable,
            *command,
            cwd=REPO_ROOT,
            env=settings,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        await _wait_until_ready(proc, url, log)
        yield url, proc.pid
        if proc.returncode is not None:
            raise BenchError(f"{name}: the server died under load:\n{_tail(log)}")
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 15)
            except TimeoutError:
                proc.kill()
                await proc.wait()


def _has_taskset() -> bool:
    return shutil.which("taskset") is not None


def _tail(log: Path, lines: int = 30) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


async def _wait_until_ready(proc: asyncio.subprocess.Process, url: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if proc.returncode is not None:
                raise BenchError(f"the server exited with {proc.returncode}:\n{_tail(log)}")
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(f"{url}/readyz") as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.1)
    raise BenchError(f"the server was not ready within {START_TIMEOUT:.0f} s:\n{_tail(log)}")


async def _counter(session: aiohttp.ClientSession, url: str, pattern: re.Pattern[str]) -> float:
    """The sum of the samples of a counter in Keel's /metrics."""
    async with session.get(f"{url}/metrics") as response:
        text = await response.text()
    return sum(float(match.group(1)) for match in pattern.finditer(text))


@dataclass
class Submitted:
    job_id: str
    sent_at: float  # epoch seconds, when the POST was sent
    latency: float  # seconds until the 202


async def _run_jobs(
    session: aiohttp.ClientSession, url: str, jobs: int, concurrency: int
) -> list[Submitted]:
    """Submit `jobs` demo.echo jobs with `concurrency` clients; wait until all succeeded."""
    before = await _counter(session, url, _SUCCEEDED)
    submitted: list[Submitted] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for n in range(jobs):
        queue.put_nowait(n)

    async def client() -> None:
        while not queue.empty():
            n = queue.get_nowait()
            body = {"task": "demo.echo", "args": {"n": n}}
            sent_at, started = time.time(), time.perf_counter()
            async with session.post(f"{url}/api/jobs", json=body) as response:
                if response.status != 202:
                    raise BenchError(f"POST /api/jobs: {response.status} {await response.text()}")
                job_id = (await response.json())["id"]
            submitted.append(Submitted(job_id, sent_at, time.perf_counter() - started))

    await asyncio.gather(*(client() for _ in range(concurrency)))
    async with asyncio.timeout(RUN_TIMEOUT):
        # The end is polled while Keel works through the backlog, on the core it runs
        # on: /metrics every 20 ms took a sixth of that core (rendering it costs 3.7 ms
        # of CPU on a slow host, a job's read 0.8 ms). The queue is first in, first out,
        # so the job accepted last is about the last to finish: poll it alone, every
        # 50 ms (the end is seen at most that late: 1-2% of a 2000-job run), then
        # Keel's counter until it counts every job.
        last = submitted[-1].job_id
        while True:
            if await _status(session, url, last) == "succeeded":
                break
            await asyncio.sleep(0.05)
        while True:
            if await _counter(session, url, _SUCCEEDED) >= before + jobs:
                return submitted
            await asyncio.sleep(0.02)


async def _status(session: aiohttp.ClientSession, url: str, job_id: str) -> str:
    async with session.get(f"{url}/api/jobs/{job_id}") as response:
        record = await response.json()
    status: str = record.get("status", "")
    if status == "dead":  # "failed" is retried
        raise BenchError(f"job {job_id} is {record}")
    return status


def _epoch(iso: str) -> float:
    """A record's `updated_at` (`2026-01-31T12:00:00.123Z`) as epoch seconds."""
    return datetime.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


async def keel(
    name: str, work_dir: Path, env: dict[str, str], jobs: int, concurrency: int
) -> Figures:
    """Jobs/s from the first submit until Keel has recorded every job succeeded."""
    async with keel_server(name, work_dir, env) as (url, pid):
        connector = aiohttp.TCPConnector(limit=concurrency)
        async with aiohttp.ClientSession(connector=connector) as session:
            await _run_jobs(session, url, WARMUP_JOBS, concurrency)
            transactions = await _counter(session, url, _TRANSACTIONS)
            started, cpu_before = time.perf_counter(), cpu_seconds(pid)
            submitted = await _run_jobs(session, url, jobs, concurrency)
            elapsed, cpu = time.perf_counter() - started, cpu_seconds(pid) - cpu_before
            transactions = await _counter(session, url, _TRANSACTIONS) - transactions
            ends = []
            for job in submitted:  # untimed: every job reads back as succeeded
                async with session.get(f"{url}/api/jobs/{job.job_id}") as response:
                    record = await response.json()
                if record.get("status") != "succeeded":
                    raise BenchError(f"{name}: job {job.job_id} is {record}")
                # updated_at has milliseconds: floor it at the 202's latency.
                ends.append(max(_epoch(record["updated_at"]) - job.sent_at, job.latency))
    latencies = [job.latency for job in submitted]
    return figures(jobs, elapsed, latencies, ends, transactions / jobs, cpu)


async def _delete_queues(prefix: str) -> None:
    connection = await aiormq.connect(AMQP_URL)
    try:
        channel = await connection.channel()
        for suffix in ("jobs", "dead"):
            await channel.queue_delete(f"{prefix}.{suffix}")
    finally:
        await connection.close()


async def broker_answers() -> bool:
    try:
        async with asyncio.timeout(3):
            connection = await aiormq.connect(AMQP_URL)
            await connection.close()
    except (OSError, TimeoutError, aiormq.exceptions.AMQPError):
        return False
    return True


# --- the run ------------------------------------------------------------------------


async def run(args: argparse.Namespace) -> dict[str, list[Figures]]:
    selected = [s for s in SCENARIOS if not args.only or s in args.only]
    if any(s != "keel-embedded" for s in selected) and not await broker_answers():
        print(f"RabbitMQ at {AMQP_URL} does not answer: RabbitMQ scenarios skipped")
        selected = [s for s in selected if s == "keel-embedded"]
    rounds: dict[str, list[Figures]] = {name: [] for name in selected}
    print(f"{'':9}{COLUMNS}", flush=True)
    with tempfile.TemporaryDirectory(prefix="keel-bench-jobs-") as tmp:
        work_dir = Path(tmp)
        for round_number in range(args.rounds):
            for name in selected:
                if name == "bare-aiormq":
                    figure = await bare_aiormq(args.jobs, args.concurrency)
                elif name == "keel-rabbitmq":
                    prefix = f"keel-bench-{os.getpid()}-{round_number}"
                    env = {"KEEL_AMQP__URL": AMQP_URL, "KEEL_QUEUE__NAME": prefix}
                    try:
                        figure = await keel(name, work_dir, env, args.jobs, args.concurrency)
                    finally:
                        await _delete_queues(prefix)
                else:
                    figure = await keel(name, work_dir, {}, args.jobs, args.concurrency)
                rounds[name].append(figure)
                bare = rounds.get("bare-aiormq")
                ratio = figure.jobs_per_sec / bare[-1].jobs_per_sec if bare else None
                print(f"round {round_number + 1:<2} {_line(name, figure, ratio)}", flush=True)
    return rounds


COLUMNS = (
    f"{'scenario':<14} {'jobs/s':>9} {'vs bare':>8} {'submit p50':>11} {'p99':>7}"
    f" {'end-to-end p50':>15} {'p99':>7} {'shard tx/job':>13} {'CPU/job':>9}"
)


def _line(name: str, figure: Figures, ratio: float | None = None) -> str:
    tx, cpu = figure.transactions_per_job, figure.cpu_us_per_job
    return (
        f"{name:<14} {figure.jobs_per_sec:>9,.1f} {'-' if ratio is None else f'{ratio:.3f}':>8}"
        f" {figure.submit_p50:>9.1f}ms {figure.submit_p99:>5.1f}ms"
        f" {figure.end_to_end_p50:>13.1f}ms {figure.end_to_end_p99:>5.1f}ms"
        f" {'-' if tx is None else f'{tx:.2f}':>13}"
        f" {'-' if cpu is None else f'{cpu:.0f}µs':>9}"
    )


def summarize(rounds: dict[str, list[Figures]]) -> dict[str, dict[str, float | None]]:
    """Per scenario the median of each figure over the rounds, and the median of its
    per-round ratios to bare-aiormq (a ratio within one round cancels most of the
    drift a shared machine adds)."""
    bare = rounds.get("bare-aiormq")
    summary: dict[str, dict[str, float | None]] = {}
    for name, figures_ in rounds.items():
        medians: dict[str, float | None] = {}
        for key in asdict(figures_[0]):
            values = [v for f in figures_ if (v := getattr(f, key)) is not None]
            medians[key] = statistics.median(values) if values else None
        if bare:
            pairs = list(zip(figures_, bare, strict=True))
            medians["vs_bare"] = statistics.median(
                f.jobs_per_sec / b.jobs_per_sec for f, b in pairs
            )
            cpu = [
                f.cpu_us_per_job / b.cpu_us_per_job
                for f, b in pairs
                if f.cpu_us_per_job and b.cpu_us_per_job
            ]
            medians["cpu_vs_bare"] = statistics.median(cpu) if cpu else None
        summary[name] = medians
    return summary


def report(summary: dict[str, dict[str, float | None]]) -> str:
    lines = [COLUMNS]
    for name, medians in summary.items():
        values = {k: v for k, v in medians.items() if k not in ("vs_bare", "cpu_vs_bare")}
        lines.append(_line(name, Figures(**values), medians.get("vs_bare")))  # type: ignore[arg-type]
    for name in ("keel-rabbitmq", "keel-embedded"):
        ratio = summary.get(name, {}).get("vs_bare")
        if ratio is not None:
            verdict = "" if ratio >= TARGET else "  MISSED"
            lines.append(f"{name}/bare-aiormq ratio: {ratio:.3f} (target >= {TARGET}){verdict}")
            cpu = summary[name].get("cpu_vs_bare")
            if cpu is not None:
                # Steadier than jobs/s on a shared machine; while each side is bound by
                # its core, jobs/s goes as the inverse of CPU per job.
                lines.append(
                    f"  CPU per job: {cpu:.2f}x bare's (the target needs <= {1 / TARGET:.1f}x)"
                )
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2000, help="jobs per measured run")
    parser.add_argument(
        "--concurrency", type=int, default=64, help="HTTP clients / publishes in flight"
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds; the median is reported")
    parser.add_argument("--only", action="append", choices=SCENARIOS, help="run only these")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    print(
        f"jobs benchmark: {args.jobs} jobs x {args.rounds} round(s), concurrency "
        f"{args.concurrency}; Keel on core {SERVER_CORE}, this client on {pin(CLIENT_CORE)}"
    )
    try:
        rounds = asyncio.run(run(args))
    except (BenchError, aiohttp.ClientError, TimeoutError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if not rounds:
        print("error: no scenario ran", file=sys.stderr)
        return 1
    summary = summarize(rounds)
    print()
    print(report(summary))
    if args.json:
        per_round = {name: [asdict(f) for f in figures_] for name, figures_ in rounds.items()}
        Path(args.json).write_text(json.dumps({"rounds": per_round, "summary": summary}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
