"""The faults, in the order the report runs them: each injected into the rig and healed.

`run(rig, hold)` returns the `Fault`: when it began and ended (for a crash, both
are the moment of the kill: what follows is recovery), and how to explain the
failures it may cause (a declared degradation) — anything else that fails is
unexplained.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.fault_report.figures import Explain
from bench.fault_report.ledger import Request
from bench.fault_report.rig import Rig

SLOW_SHARD_SECONDS = 2.0
FAULTY_SHARD = 1  # the shard the shard scenarios break: shard.1
ROLLING_RESTART_TIMEOUT = 180.0
BUSY_WORKER_TIMEOUT = 20.0


def nothing_explained(_: Request) -> str | None:
    return None


@dataclass
class Fault:
    started: float
    ended: float
    explain: Explain = nothing_explained
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Scenario:
    name: str
    fault: str  # what is done, for the table ({hold}: the fault's seconds)
    run: Callable[[Rig, float], Awaitable[Fault]]


def shard_down(request: Request) -> str | None:
    """A 503 `unavailable` naming the faulty shard: the declared degradation."""
    faulty = f"shard.{FAULTY_SHARD}"
    if request.status == 503 and request.code == "unavailable" and request.shard == faulty:
        return f"503 unavailable for {faulty}'s keys"
    return None


async def redis_partition(rig: Rig, hold: float) -> Fault:
    assert rig.redis is not None
    started = time.time()
    rig.redis.pause()
    await asyncio.sleep(hold)
    rig.redis.resume()
    return Fault(started, time.time())


async def redis_restart(rig: Rig, hold: float) -> Fault:
    assert rig.redis is not None
    redis = rig.redis
    started = time.time()
    await asyncio.to_thread(redis.restart, kill=True)  # returns once the empty one listens
    return Fault(started, time.time())


async def broker_cut(rig: Rig, hold: float) -> Fault:
    started = time.time()
    await rig.amqp_proxy.cut("refuse")
    await asyncio.sleep(hold)
    await rig.amqp_proxy.restore()
    return Fault(started, time.time())


async def shard_outage(rig: Rig, hold: float) -> Fault:
    proxy = rig.shard_proxies[FAULTY_SHARD]
    started = time.time()
    await proxy.cut("refuse")
    await asyncio.sleep(hold)
    await proxy.restore()
    return Fault(started, time.time(), shard_down)


async def slow_shard(rig: Rig, hold: float) -> Fault:
    proxy = rig.shard_proxies[FAULTY_SHARD]
    started = time.time()
    await proxy.slow(SLOW_SHARD_SECONDS)
    await asyncio.sleep(hold)
    await proxy.restore()
    return Fault(started, time.time(), shard_down)


async def worker_crash(rig: Rig, hold: float) -> Fault:
    """SIGKILL a worker that is running jobs; a new one is started, as a supervisor would."""
    deadline = time.monotonic() + BUSY_WORKER_TIMEOUT
    notes: list[str] = []
    while True:
        workers = rig.live_workers()
        running = await asyncio.gather(*(w.running_jobs() for w in workers))
        busy = [(n, w) for n, w in zip(running, workers, strict=True) if n > 0]
        if busy or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    if busy:
        jobs, victim = max(busy, key=lambda pair: pair[0])
        notes.append(f"the killed worker was running {jobs:.0f} job(s)")
    else:
        victim = rig.live_workers()[0]
        notes.append("no worker was seen running a job: killed one anyway")
    killed = time.time()
    victim.signal(signal.SIGKILL)
    await victim.exit_status()
    await rig.start_worker()
    return Fault(killed, killed, notes=notes)


async def instance_crash(rig: Rig, hold: float) -> Fault:
    """SIGKILL instance 2; the cluster restarts it. Requests in flight on it may fail."""
    number = 2
    pid = rig.instance_pid(number)
    address = f"127.0.0.1:{rig.instance_port(number)}"
    killed = time.time()
    os.kill(pid, signal.SIGKILL)
    in_flight = InFlight(rig.access_log, address, killed)
    return Fault(killed, killed, in_flight.explain, [f"SIGKILL instance {number} (pid {pid})"])


class InFlight:
    """Explains a failed request that was in flight on the killed instance.

    In flight: it began before the kill, ended after it, and nginx's access
    log says it was passed to that instance. The log is read once, when the
    first failure is explained (after the run, when the log is complete).
    """

    LINE = re.compile(r"rid=(\S+) upstream=(.*?) upstream_status=")

    def __init__(self, access_log: Path, address: str, killed: float) -> None:
        self.access_log = access_log
        self.address = address
        self.killed = killed
        self._upstreams: dict[str, str] | None = None

    def explain(self, request: Request) -> str | None:
        if not request.started <= self.killed <= request.ended:
            return None
        if self._upstreams is None:
            text = self.access_log.read_text(errors="replace")
            self._upstreams = {m[1]: m[2] for m in self.LINE.finditer(text)}
        if self.address in self._upstreams.get(request.request_id, ""):
            return "in flight on the killed instance"
        return None


async def rolling_restart(rig: Rig, hold: float) -> Fault:
    assert rig.cluster is not None
    done = "rolling restart done"
    before = rig.cluster.log().count(done)
    started = time.time()
    rig.cluster.signal(signal.SIGHUP)
    await rig.cluster.wait_for_log(done, count=before + 1, timeout=ROLLING_RESTART_TIMEOUT)
    return Fault(started, time.time())


SCENARIOS = (
    Scenario("redis-partition", "Redis SIGSTOP for {hold:g} s", redis_partition),
    Scenario("redis-restart", "Redis SIGKILL, an empty one started", redis_restart),
    Scenario("broker-cut", "RabbitMQ connections dropped for {hold:g} s", broker_cut),
    Scenario("shard-outage", "shard.1 connections dropped for {hold:g} s", shard_outage),
    Scenario(
        "slow-shard",
        f"shard.1 answers +{SLOW_SHARD_SECONDS:g} s for {{hold:g}} s",
        slow_shard,
    ),
    Scenario("worker-crash", "a worker running jobs SIGKILLed", worker_crash),
    Scenario("instance-crash", "one instance SIGKILLed", instance_crash),
    Scenario("rolling-restart", "SIGHUP: instances replaced in turn", rolling_restart),
)
BY_NAME = {scenario.name: scenario for scenario in SCENARIOS}
