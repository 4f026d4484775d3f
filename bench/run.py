"""Load benchmark: Keel against a bare-aiohttp baseline, measured in one run.

Each scenario's server runs pinned to CPU core 0 and wrk (one thread) to
core 1, so the server gets a core of its own and the two never compete.
Every scenario is reported as a ratio to the ``bare`` scenario of the same
run: bare's server stays up for the whole run, and each scenario is measured
in short bursts that alternate with bursts against bare, so every ratio
compares the two on the same machine at the same moment.

This is a report, not a test: a missed target still exits 0. A server that
does not start, dies under load, or a wrk run that fails or sees non-2xx
responses exits 1, because then there is no figure to report.

    python bench/run.py [--duration 10] [--connections 64] [--only keel] [--json out.json]
"""

import argparse
import contextlib
import http.client
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
BASELINE = "bare"
SERVER_CORE = 0
WRK_CORE = 1
START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
WARMUP_SECONDS = 2
# Scenario and baseline take turns in bursts this long: a shared machine's
# slow spells last longer, so each pair of bursts sees the same machine.
BURST_SECONDS = 2
LOG_TAIL_LINES = 40


class BenchError(Exception):
    """A run that produced no figure: the server or wrk failed.

    ``log`` names the server's output file when it may explain the failure.
    """

    def __init__(self, message: str, log: Path | None = None) -> None:
        super().__init__(message)
        self.log = log


@dataclass(frozen=True)
class Scenario:
    """One server to measure and the request wrk sends it.

    ``command`` items may contain ``{port}``, filled in with a free port at
    start. ``env`` is added to the inherited environment. ``script`` is an
    optional wrk Lua script (``wrk -s``) for requests beyond a plain GET.
    ``target`` is the minimum requests/s ratio to ``bare`` this scenario aims
    for; it is reported, never enforced.
    """

    name: str
    command: tuple[str, ...]
    path: str
    env: Mapping[str, str] = field(default_factory=dict)
    script: Path | None = None
    target: float | None = None
    # Items created over HTTP before measuring; with random_item, wrk GETs them at random.
    seed_items: int = 0
    random_item: bool = False
    # Report Redis commands and round trips per request (from Keel's /metrics).
    count_redis: bool = False
    # Measure with one admin dashboard open on /admin/ws (bench/admin_viewer.py): every
    # burst with the viewer is paired with one on the same server without it.
    admin_viewer: bool = False
    # Measure the server's CPU while idle (no load) for IDLE_SECONDS before the bursts.
    idle_cpu: bool = False


@dataclass(frozen=True)
class WrkResult:
    requests_per_sec: float
    p99_ms: float
    non_2xx: int
    socket_errors: int
    requests: int = 0
    redis_per_request: float | None = None
    round_trips_per_request: float | None = None


@dataclass(frozen=True)
class Result:
    scenario: str
    requests_per_sec: float
    p99_ms: float
    ratio: float
    target: float | None
    non_2xx: int
    socket_errors: int
    redis_per_request: float | None = None
    round_trips_per_request: float | None = None
    idle_cpu_ms_per_s: float | None = None
    idle_cpu_viewer_ms_per_s: float | None = None
    admin_cpu_ms_per_snapshot: float | None = None
    viewer_pushes: int | None = None
    viewer_ratio: float | None = None  # with a viewer / without, same server


def keel_scenario(name: str, work_dir: Path, path: str, **kwargs: object) -> Scenario:
    """Keel on its default config, quiet logs, data under ``work_dir``."""
    env = {
        "KEEL_SERVER__DATA_DIR": str(work_dir / f"{name}-data"),
        "KEEL_LOGGING__LEVEL": "warning",
        # Throughput does not depend on it; it only makes each stop slow.
        "KEEL_SERVER__DRAIN_DELAY": "0",
        # wrk is one client: a budget it never exhausts keeps the limiter on the
        # path (one script call per request) without refusing anything.
        "KEEL_RATELIMIT__DEFAULT": UNLIMITED,
        "KEEL_ADMIN__TOKEN": ADMIN_TOKEN,
    }
    env.update(kwargs.pop("env", {}))  # type: ignore[call-overload]
    command = (sys.executable, "run.py", "serve", "--host", "127.0.0.1", "--port", "{port}")
    return Scenario(name=name, command=command, path=path, env=env, **kwargs)  # type: ignore[arg-type]


# The bench starts a redis-server of its own (on wrk's core: Redis is another
# machine in production, and never Keel's core here), so that the commands it
# counts per request are Keel's alone.
REDIS_PORT = int(os.environ.get("KEEL_BENCH_REDIS_PORT", "0")) or None
UNLIMITED = "1000000000/second"
ADMIN_TOKEN = "bench-admin-token"
# Seconds of idle CPU measured (with and without a dashboard viewer).
IDLE_SECONDS = 10
# The full production path — Redis-backed rate limit, Redis cache, metrics,
# request ids, breakers — against bare aiohttp (the rate-limit issue's target).
HEADLINE_TARGET = 0.35
# The storage scenarios measure the shards: no cache or limiter in front of them.
UNCACHED = {"KEEL_PLUGINS__ENABLED": '["metrics", "redis", "sharding"]'}


def scenarios(work_dir: Path, pg_shards: Sequence[str], redis_url: str) -> list[Scenario]:
    """Every scenario, ``bare`` first. ``work_dir`` holds per-run state."""
    python = sys.executable
    pg = {"KEEL_SHARDING__SHARDS": json.dumps(list(pg_shards))}
    with_redis = {"KEEL_REDIS__URL": redis_url, "KEEL_REDIS__KEY_PREFIX": "keel-bench:"}
    return [
        Scenario(
            name=BASELINE,
            command=(python, str(REPO_ROOT / "bench" / "bare_app.py"), "--port", "{port}"),
            path="/healthz",
        ),
        Scenario(
            name="keel",
            command=(python, "run.py", "serve", "--host", "127.0.0.1", "--port", "{port}"),
            path="/healthz",
            env={
                "KEEL_SERVER__DATA_DIR": str(work_dir / "keel-data"),
                "KEEL_LOGGING__LEVEL": "warning",
                # Throughput does not depend on it; it only makes each stop slow.
                "KEEL_SERVER__DRAIN_DELAY": "0",
                "KEEL_RATELIMIT__DEFAULT": UNLIMITED,
            },
            target=0.75,
        ),
        keel_scenario(
            "items-cached-memory", work_dir, "/api/items", seed_items=1000, random_item=True
        ),
        keel_scenario(
            "items-cached-redis",
            work_dir,
            "/api/items",
            seed_items=1000,
            random_item=True,
            env=with_redis,
            count_redis=True,
            target=HEADLINE_TARGET,
        ),
        keel_scenario(
            "items-cached-redis-viewer",
            work_dir,
            "/api/items",
            seed_items=1000,
            random_item=True,
            env=with_redis,
            admin_viewer=True,
            idle_cpu=True,
        ),
        keel_scenario(
            "items-cached-redis-local",
            work_dir,
            "/api/items",
            seed_items=1000,
            random_item=True,
            env={**with_redis, "KEEL_CACHE__LOCAL_TTL": "30"},
            count_redis=True,
            target=HEADLINE_TARGET,
        ),
        keel_scenario(
            "items-get-sqlite",
            work_dir,
            "/api/items",
            seed_items=1000,
            random_item=True,
            env=UNCACHED,
        ),
        keel_scenario(
            "items-get-pg",
            work_dir,
            "/api/items",
            seed_items=1000,
            random_item=True,
            env={**UNCACHED, **pg},
        ),
        keel_scenario(
            "items-list-sqlite", work_dir, "/api/items?limit=50", seed_items=1000, env=UNCACHED
        ),
        keel_scenario(
            "items-list-pg",
            work_dir,
            "/api/items?limit=50",
            seed_items=1000,
            env={**UNCACHED, **pg},
        ),
    ]


def select(all_scenarios: Sequence[Scenario], only: Sequence[str]) -> list[Scenario]:
    """The scenarios named in ``only`` (all when empty), always with the baseline."""
    known = {s.name for s in all_scenarios}
    unknown = sorted(set(only) - known)
    if unknown:
        raise ValueError(f"unknown scenario {', '.join(unknown)}; choose from {', '.join(known)}")
    wanted = set(only) | {BASELINE} if only else known
    return [s for s in all_scenarios if s.name in wanted]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def check_cores() -> None:
    available = os.sched_getaffinity(0)
    missing = {SERVER_CORE, WRK_CORE} - available
    if missing:
        raise BenchError(
            f"CPU core(s) {sorted(missing)} not available to this process "
            f"(have {sorted(available)}); the bench pins the server and wrk to separate cores"
        )


def answers(port: int, path: str) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1.0)
    try:
        conn.request("GET", path)
        return conn.getresponse().status == 200
    except OSError:  # refused, reset or timed out: not up yet
        return False
    finally:
        conn.close()


def wait_until_up(proc: subprocess.Popen[bytes], port: int, scenario: Scenario, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"{scenario.name}: server exited with {proc.returncode}", log)
        if answers(port, scenario.path):
            return
        time.sleep(0.1)
    raise BenchError(
        f"{scenario.name}: no 200 from GET {scenario.path} within {START_TIMEOUT:.0f} s", log
    )


def stop(proc: subprocess.Popen[bytes], name: str) -> None:
    """SIGTERM, then SIGKILL if it outlives ``STOP_TIMEOUT``; reap it either way."""
    if proc.poll() is not None:
        return  # already gone; whoever noticed reports it
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        print(f"{name}: still running {STOP_TIMEOUT:.0f} s after SIGTERM, killing", flush=True)
        proc.kill()
        proc.wait()
        return
    if proc.returncode not in (0, -signal.SIGTERM):
        print(f"{name}: warning: exit status {proc.returncode} after SIGTERM", flush=True)


@contextlib.contextmanager
def running_server(scenario: Scenario, log: Path) -> Iterator[tuple[int, int]]:
    """Start the scenario's server on core 0, yield (port, pid) once it answers, stop it."""
    port = free_port()
    command = ["taskset", "-c", str(SERVER_CORE)]
    command += [part.replace("{port}", str(port)) for part in scenario.command]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            env={**os.environ, **scenario.env},
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            # Its own session, so a Ctrl-C reaches only the bench, which then
            # stops the server through the usual SIGTERM path.
            start_new_session=True,
        )
    try:
        wait_until_up(proc, port, scenario, log)
        yield port, proc.pid  # taskset execs the server: the same process
        if proc.poll() is not None:
            raise BenchError(f"{scenario.name}: server died under load ({proc.returncode})", log)
    finally:
        stop(proc, scenario.name)


_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}
_P99 = re.compile(r"^\s*99(?:\.0+)?%\s+([\d.]+)(us|ms|s|m|h)\s*$", re.MULTILINE)
_RPS = re.compile(r"^Requests/sec:\s+([\d.]+)\s*$", re.MULTILINE)
_TOTAL = re.compile(r"^\s*(\d+) requests in ", re.MULTILINE)
_NON_2XX = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")
_SOCKET_ERRORS = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")


def parse_wrk(output: str) -> WrkResult:
    """Requests/s, p99 latency and error counts from ``wrk --latency`` output."""
    rps = _RPS.search(output)
    p99 = _P99.search(output)
    if rps is None or p99 is None:
        raise ValueError("no Requests/sec or 99% latency line in wrk output")
    non_2xx = _NON_2XX.search(output)
    socket_errors = _SOCKET_ERRORS.search(output)
    total = _TOTAL.search(output)
    return WrkResult(
        requests_per_sec=float(rps.group(1)),
        p99_ms=float(p99.group(1)) * _UNIT_MS[p99.group(2)],
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=sum(map(int, socket_errors.groups())) if socket_errors else 0,
        requests=int(total.group(1)) if total else 0,
    )


def wrk(scenario: Scenario, port: int, duration: int, connections: int) -> WrkResult:
    command = ["taskset", "-c", str(WRK_CORE), "wrk", "-t1", f"-c{connections}"]
    command += [f"-d{duration}s", "--latency"]
    if scenario.script is not None:
        command += ["-s", str(scenario.script)]
    command.append(f"http://127.0.0.1:{port}{scenario.path}")
    try:
        done = subprocess.run(command, capture_output=True, text=True, check=False)
    except FileNotFoundError as exc:
        raise BenchError(f"cannot run {exc.filename}: install wrk (make bench does)") from exc
    if done.returncode != 0:
        raise BenchError(f"{scenario.name}: wrk exited {done.returncode}: {done.stderr.strip()}")
    try:
        result = parse_wrk(done.stdout)
    except ValueError as exc:
        raise BenchError(f"{scenario.name}: {exc}:\n{done.stdout}") from exc
    if result.non_2xx:
        # Errors are cheaper than real answers: the throughput would be a lie.
        raise BenchError(f"{scenario.name}: {result.non_2xx} non-2xx responses:\n{done.stdout}")
    return result


def seed(port: int, count: int) -> list[str]:
    """Create ``count`` items over HTTP; their ids."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    ids = []
    try:
        for n in range(count):
            body = json.dumps({"name": f"bench item {n}", "price": n / 10, "tags": ["bench"]})
            conn.request("POST", "/api/items", body, {"Content-Type": "application/json"})
            response = conn.getresponse()
            payload = response.read()
            if response.status != 201:
                raise BenchError(
                    f"seeding: POST /api/items answered {response.status}: {payload!r}"
                )
            ids.append(json.loads(payload)["id"])
    finally:
        conn.close()
    return ids


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def idle_cpu_ms_per_s(pid: int, name: str) -> float:
    """The server's CPU per second of wall time while nothing loads it."""
    print(f"{name}: measuring idle CPU for {IDLE_SECONDS} s", flush=True)
    time.sleep(2)  # let seeding's aftermath settle
    before, started = cpu_seconds(pid), time.monotonic()
    time.sleep(IDLE_SECONDS)
    return (cpu_seconds(pid) - before) / (time.monotonic() - started) * 1000


class ViewerProcess:
    """bench/admin_viewer.py, running; `result()` stops it and returns what it printed."""

    def __init__(self, proc: subprocess.Popen[str], log: Path) -> None:
        self.proc = proc
        self.log = log

    def result(self) -> dict[str, Any]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            out, _ = self.proc.communicate(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise BenchError("admin viewer did not stop", self.log) from None
        if self.proc.returncode != 0 or not out.strip():
            raise BenchError(f"admin viewer exited {self.proc.returncode}", self.log)
        result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        return result


@contextlib.contextmanager
def admin_viewer(port: int, log: Path) -> Iterator[ViewerProcess]:
    """A dashboard viewer on wrk's core, connected before this yields."""
    command = ["taskset", "-c", str(WRK_CORE), sys.executable]
    command += [str(REPO_ROOT / "bench" / "admin_viewer.py"), "--port", str(port)]
    command += ["--token", ADMIN_TOKEN]
    with log.open("w") as err:
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=err, text=True)
    viewer = ViewerProcess(proc, log)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while "connected" not in log.read_text():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise BenchError("admin viewer did not connect", log)
            time.sleep(0.05)
        yield viewer
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


_REDIS_COUNTS = re.compile(r"^keel_redis_(commands|pipelines)_total ([\d.e+]+)$", re.MULTILINE)


def redis_counts(port: int) -> tuple[float, float]:
    """Keel's request-path Redis commands and pipelines (round trips) so far."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
    finally:
        conn.close()
    found = dict(_REDIS_COUNTS.findall(text))
    return float(found.get("commands", 0)), float(found.get("pipelines", 0))


def random_item_script(ids: Sequence[str], path: Path) -> Path:
    """A wrk script that GETs a random one of ``ids`` per request."""
    listed = ",".join(f'"{i}"' for i in ids)
    path.write_text(
        f"local ids = {{{listed}}}\n"
        "math.randomseed(42)\n"
        "request = function()\n"
        '  return wrk.format("GET", "/api/items/" .. ids[math.random(#ids)])\n'
        "end\n"
    )
    return path


@dataclass(frozen=True)
class Paired:
    """One scenario's measurement in one round, burst by burst with the baseline's."""

    runs: list[WrkResult]
    baselines: list[WrkResult]
    redis_per_request: float | None = None
    round_trips_per_request: float | None = None
    idle_cpu_ms_per_s: float | None = None
    idle_cpu_viewer_ms_per_s: float | None = None
    admin_cpu_ms_per_snapshot: float | None = None
    viewer_pushes: int | None = None
    viewer_ratio: float | None = None

    @property
    def ratio(self) -> float:
        """The median of the burst-by-burst ratios."""
        return statistics.median(
            r.requests_per_sec / b.requests_per_sec
            for r, b in zip(self.runs, self.baselines, strict=True)
        )


def bursts(duration: int) -> int:
    """Bursts per side: an even number, so each side goes first as often as second."""
    count = max(1, round(duration / BURST_SECONDS))
    return count + count % 2


def measure(
    scenario: Scenario,
    baseline: Scenario,
    baseline_port: int,
    log: Path,
    duration: int,
    connections: int,
) -> Paired:
    """The scenario in `duration` seconds of bursts, each paired with one of the baseline's."""
    print(f"{scenario.name}: starting", flush=True)
    with running_server(scenario, log) as (port, pid):
        if scenario.seed_items:
            print(f"{scenario.name}: seeding {scenario.seed_items} items", flush=True)
            ids = seed(port, scenario.seed_items)
            if scenario.random_item:
                script = random_item_script(ids, log.with_suffix(".lua"))
                scenario = replace(scenario, script=script)
        idle = idle_with_viewer = None
        if scenario.idle_cpu:
            idle = idle_cpu_ms_per_s(pid, scenario.name)
            if scenario.admin_viewer:
                with admin_viewer(port, log.with_suffix(".viewer.log")) as viewer:
                    idle_with_viewer = idle_cpu_ms_per_s(pid, scenario.name)
                    viewer.result()
        print(f"{scenario.name}: warming up {WARMUP_SECONDS} s", flush=True)
        wrk(scenario, port, WARMUP_SECONDS, connections)
        count = bursts(duration)
        print(
            f"{scenario.name}: measuring {count} x {BURST_SECONDS} s next to {BASELINE}", flush=True
        )
        before = redis_counts(port) if scenario.count_redis else (0, 0)
        runs: list[WrkResult] = []
        baselines: list[WrkResult] = []
        without: list[WrkResult] = []
        seen: dict[str, Any] = {}
        for number in range(count):
            # Who goes first alternates: a burst right after another runs on a warmer core.
            if number % 2 == 0:
                baselines.append(wrk(baseline, baseline_port, BURST_SECONDS, connections))
            if scenario.admin_viewer:
                seen = viewer_pair(scenario, port, log, connections, number, runs, without)
            else:
                runs.append(wrk(scenario, port, BURST_SECONDS, connections))
            if number % 2 == 1:
                baselines.append(wrk(baseline, baseline_port, BURST_SECONDS, connections))
        paired = Paired(
            runs, baselines, idle_cpu_ms_per_s=idle, idle_cpu_viewer_ms_per_s=idle_with_viewer
        )
        if scenario.admin_viewer:
            paired = replace(
                paired,
                viewer_pushes=seen.get("pushes"),
                admin_cpu_ms_per_snapshot=seen.get("admin", {}).get("cpu_ms_per_snapshot"),
                viewer_ratio=statistics.median(
                    r.requests_per_sec / w.requests_per_sec
                    for r, w in zip(runs, without, strict=True)
                ),
            )
        requests = sum(r.requests for r in runs)
        if scenario.count_redis and requests:
            after = redis_counts(port)
            paired = replace(
                paired,
                redis_per_request=(after[0] - before[0]) / requests,
                round_trips_per_request=(after[1] - before[1]) / requests,
            )
    if errors := sum(r.socket_errors for r in runs):
        print(f"{scenario.name}: warning: {errors} socket errors", flush=True)
    return paired


VIEWER_SETTLE = 1.5  # seconds between a viewer's arrival or departure and a burst


def viewer_pair(
    scenario: Scenario,
    port: int,
    log: Path,
    connections: int,
    number: int,
    runs: list[WrkResult],
    without: list[WrkResult],
) -> dict[str, Any]:
    """One burst with a dashboard viewer connected and one without, in alternating order.

    Returns what the viewer reported (its pushes, the plugin's CPU per snapshot)."""
    seen: dict[str, Any] = {}
    for with_viewer in (True, False) if number % 2 == 0 else (False, True):
        if with_viewer:
            with admin_viewer(port, log.with_suffix(".viewer.log")) as viewer:
                time.sleep(VIEWER_SETTLE)  # its first state (the whole history) is sent
                runs.append(wrk(scenario, port, BURST_SECONDS, connections))
                seen = viewer.result()  # stops it, while the server still answers
        else:
            time.sleep(VIEWER_SETTLE)
            without.append(wrk(scenario, port, BURST_SECONDS, connections))
    return seen


def median_or_none(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if len(present) == len(values) and present else None


def summarize(scenario: Scenario, rounds: Sequence[Paired]) -> Result:
    """Medians over every burst; the ratio is the median of the rounds' ratios."""
    runs = [r for paired in rounds for r in paired.runs]
    return Result(
        scenario=scenario.name,
        requests_per_sec=statistics.median(r.requests_per_sec for r in runs),
        p99_ms=statistics.median(r.p99_ms for r in runs),
        ratio=statistics.median(paired.ratio for paired in rounds),
        target=scenario.target,
        non_2xx=sum(r.non_2xx for r in runs),
        socket_errors=sum(r.socket_errors for r in runs),
        redis_per_request=median_or_none([p.redis_per_request for p in rounds]),
        round_trips_per_request=median_or_none([p.round_trips_per_request for p in rounds]),
        idle_cpu_ms_per_s=median_or_none([p.idle_cpu_ms_per_s for p in rounds]),
        idle_cpu_viewer_ms_per_s=median_or_none([p.idle_cpu_viewer_ms_per_s for p in rounds]),
        admin_cpu_ms_per_snapshot=median_or_none([p.admin_cpu_ms_per_snapshot for p in rounds]),
        viewer_pushes=(
            round(statistics.median(p.viewer_pushes or 0 for p in rounds))
            if scenario.admin_viewer
            else None
        ),
        viewer_ratio=median_or_none([p.viewer_ratio for p in rounds]),
    )


def baseline_result(scenario: Scenario, runs: Sequence[WrkResult]) -> Result:
    return Result(
        scenario=scenario.name,
        requests_per_sec=statistics.median(r.requests_per_sec for r in runs),
        p99_ms=statistics.median(r.p99_ms for r in runs),
        ratio=1.0,
        target=None,
        non_2xx=sum(r.non_2xx for r in runs),
        socket_errors=sum(r.socket_errors for r in runs),
    )


def report(results: Sequence[Result]) -> str:
    width = max(len("scenario"), *(len(r.scenario) for r in results))
    header = f"{'scenario':<{width}}  {'requests/s':>12}  {'p99 (ms)':>9}  {'vs bare':>7}"
    lines = [header + f"  {'redis cmds/req':>14}  {'round trips/req':>15}"]
    for r in results:
        rps = f"{r.requests_per_sec:,.1f}"
        cmds = f"{r.redis_per_request:.2f}" if r.redis_per_request is not None else "-"
        trips = f"{r.round_trips_per_request:.3f}" if r.round_trips_per_request is not None else "-"
        lines.append(
            f"{r.scenario:<{width}}  {rps:>12}  {r.p99_ms:>9.2f}  {r.ratio:>7.2f}"
            f"  {cmds:>14}  {trips:>15}"
        )
    verdicts = [verdict(r, r.target) for r in results if r.target is not None]
    lines = [*lines, "", *verdicts] if verdicts else lines
    return "\n".join([*lines, *admin_report(results)])


def admin_report(results: Sequence[Result]) -> list[str]:
    """The dashboard's cost: a viewer's effect on the request path, and CPU per snapshot."""
    viewed = next((r for r in results if r.viewer_ratio is not None), None)
    if viewed is None:
        return []
    lines = [
        "",
        f"admin: {viewed.scenario}: with one /admin/ws viewer vs without, same server,"
        f" alternating bursts: {viewed.viewer_ratio:.3f} (a viewer got {viewed.viewer_pushes or 0}"
        " pushes while it was connected for a burst)",
    ]
    if viewed.idle_cpu_ms_per_s is not None and viewed.idle_cpu_viewer_ms_per_s is not None:
        lines.append(
            f"admin: an idle instance spends {viewed.idle_cpu_ms_per_s:.1f} ms CPU/s (one snapshot"
            f" a second published to Redis), {viewed.idle_cpu_viewer_ms_per_s:.1f} ms/s with one"
            " viewer (plus one push a second)"
        )
    if viewed.admin_cpu_ms_per_snapshot is not None:
        lines.append(
            f"admin: building one snapshot (every plugin's state, redacted) takes"
            f" {viewed.admin_cpu_ms_per_snapshot:.2f} ms CPU, as the plugin measures it"
        )
    return lines


def verdict(result: Result, target: float) -> str:
    missed = "" if result.ratio >= target else "  MISSED"
    return (
        f"{result.scenario}/{BASELINE} ratio: {result.ratio:.2f} (target >= {target:.2f}){missed}"
    )


def log_tail(log: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = log.read_text(errors="replace")
    except FileNotFoundError:
        return "(no output)"
    return "\n".join(text.splitlines()[-lines:]) or "(no output)"


def run(
    selected: Sequence[Scenario], work_dir: Path, duration: int, connections: int, rounds: int
) -> list[Result]:
    baseline = next(s for s in selected if s.name == BASELINE)
    others = [s for s in selected if s.name != BASELINE]
    measured: dict[str, list[Paired]] = {s.name: [] for s in others}
    # The baseline stays up the whole run, idle between its bursts.
    with running_server(baseline, work_dir / f"{BASELINE}.log") as (baseline_port, _):
        wrk(baseline, baseline_port, WARMUP_SECONDS, connections)
        alone: list[WrkResult] = []
        for number in range(1, rounds + 1):
            print(f"--- round {number}/{rounds}", flush=True)
            for scenario in others:
                log = work_dir / f"{scenario.name}.log"
                measured[scenario.name].append(
                    measure(scenario, baseline, baseline_port, log, duration, connections)
                )
            if not others:
                alone.append(wrk(baseline, baseline_port, duration, connections))
    baseline_runs = [b for rounds_ in measured.values() for p in rounds_ for b in p.baselines]
    results = [baseline_result(baseline, baseline_runs or alone)]
    results += [summarize(s, measured[s.name]) for s in others]
    print()
    print(
        f"wrk -t1 -c{connections}, {bursts(duration)} x {BURST_SECONDS} s bursts per scenario,"
        f" each paired with one of {BASELINE}'s, {rounds} round(s)",
        end="; ",
    )
    print(f"server on core {SERVER_CORE}, wrk on core {WRK_CORE}")
    print(report(results))
    return results


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per measurement")
    parser.add_argument("--connections", type=int, default=64, help="wrk open connections")
    parser.add_argument(
        "--rounds", type=int, default=3, help="rounds of every scenario; medians are reported"
    )
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="NAME",
        help=f"run only this scenario (repeatable); {BASELINE!r} always runs",
    )
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write results as JSON")
    args = parser.parse_args(argv)
    if min(args.duration, args.connections, args.rounds) < 1:
        parser.error("--duration, --connections and --rounds must be at least 1")
    return args


PG_SERVER = os.environ.get("KEEL_BENCH_PG", "postgresql://postgres@127.0.0.1:5432")


@contextlib.contextmanager
def redis_server(port: int) -> Iterator[None]:
    """A throwaway redis-server on ``port``, pinned to wrk's core, nothing kept on disk."""
    with tempfile.TemporaryDirectory(prefix="keel-bench-redis-") as workdir:
        command = ["taskset", "-c", str(WRK_CORE), "redis-server", "--port", str(port)]
        command += ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", workdir]
        try:
            proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        except FileNotFoundError as exc:
            raise BenchError("redis-server is not installed (Debian package redis-server)") from exc
        try:
            deadline = time.monotonic() + START_TIMEOUT
            while True:
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port)):
                    break
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise BenchError(f"redis-server did not start on port {port}")
                time.sleep(0.05)
            yield
        finally:
            proc.terminate()
            proc.wait()


@contextlib.contextmanager
def postgres_databases(names: Sequence[str]) -> Iterator[None]:
    """Create the bench's PostgreSQL shard databases; drop them afterwards."""

    def psql(sql: str) -> None:
        done = subprocess.run(
            ["psql", f"{PG_SERVER}/postgres", "-qAtc", sql], capture_output=True, text=True
        )
        if done.returncode != 0:
            raise BenchError(f"psql {sql!r}: {done.stderr.strip()}")

    for name in names:
        psql(f'CREATE DATABASE "{name}"')
    try:
        yield
    finally:
        for name in names:
            psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    pg_names = [f"keel_bench_{os.getpid()}_{i}" for i in range(3)]
    with tempfile.TemporaryDirectory(prefix="keel-bench-") as tmp:
        work_dir = Path(tmp)
        redis_port = REDIS_PORT or free_port()
        try:
            pg_shards = [f"{PG_SERVER}/{name}" for name in pg_names]
            redis_url = f"redis://127.0.0.1:{redis_port}/0"
            selected = select(scenarios(work_dir, pg_shards, redis_url), args.only)
        except ValueError as exc:
            print(f"bench: error: {exc}", file=sys.stderr)
            return 2
        needs_pg = any("KEEL_SHARDING__SHARDS" in s.env for s in selected)
        needs_redis = any("KEEL_REDIS__URL" in s.env for s in selected)
        try:
            check_cores()
            with (
                postgres_databases(pg_names if needs_pg else ()),
                redis_server(redis_port) if needs_redis else contextlib.nullcontext(),
            ):
                results = run(selected, work_dir, args.duration, args.connections, args.rounds)
        except BenchError as exc:
            print(f"bench: error: {exc}", file=sys.stderr)
            if exc.log is not None:
                print(
                    f"--- last lines of the server's output ---\n{log_tail(exc.log)}",
                    file=sys.stderr,
                )
            return 1
        except KeyboardInterrupt:  # the server has been stopped on the way out
            print("bench: interrupted", file=sys.stderr)
            return 130
    if args.json is not None:
        payload = {
            "duration_s": args.duration,
            "connections": args.connections,
            "rounds": args.rounds,
            "results": [asdict(r) for r in results],
        }
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
