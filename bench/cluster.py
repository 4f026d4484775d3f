"""Scale-out benchmark: the cached item read through nginx to 1, 2 and 3 instances.

Each cluster (`run.py cluster --instances N`) is measured against one instance
served directly (`run.py serve`, wrk straight to it), in one run: the direct
server stays up while a layout is measured, and each cluster is measured in
2 s bursts alternating with bursts against it, as bench/run.py does. The
request is bench/run.py's headline: `GET /api/items/{id}`, a random one of
1000 items, every read a cache hit in Redis (a private redis-server on core 1),
the rate limiter on the path.

Two layouts, because on a 2-core machine that also runs nginx and wrk the
answer depends on who gets which core:

- `pinned`: every Keel process on core 0; nginx, wrk and Redis on core 1.
  Keel has one core whatever N is: the rows show what the nginx hop costs,
  and that more processes on one core add nothing.
- `shared`: nothing pinned (Redis stays on core 1): instances, nginx and wrk
  share both cores as the scheduler sees fit.

Then a rolling restart under load: a 3-instance cluster, wrk sending 3 GETs
to 1 POST /api/items for `--restart-seconds`, SIGHUP after 2 s. Reported:
requests, non-2xx answers, socket errors (goal: 0 and 0), and how long the
restart took.

    python bench/cluster.py [--duration 8] [--connections 64] [--only pinned|shared|restart]
                            [--json out.json]

A report, not a test: it exits 0 whatever the figures; 1 when there is no
figure (a server that does not start, a wrk run that fails, a non-2xx answer
outside the restart).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

# bench/run.py, beside this file (`python bench/cluster.py` puts bench/ on sys.path).
from run import (
    BURST_SECONDS,
    REPO_ROOT,
    SERVER_CORE,
    UNLIMITED,
    WARMUP_SECONDS,
    WRK_CORE,
    BenchError,
    WrkResult,
    answers,
    check_cores,
    free_port,
    log_tail,
    parse_wrk,
    random_item_script,
    redis_server,
    seed,
)

LAYOUTS = ("pinned", "shared")
INSTANCES = (1, 2, 3)
START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0
SEED_ITEMS = 1000
RESTART_DRAIN_DELAY = 2.0


@dataclass(frozen=True)
class Row:
    layout: str
    scenario: str
    requests_per_sec: float
    p99_ms: float
    ratio: float


@dataclass(frozen=True)
class RestartResult:
    requests: int
    non_2xx: int
    socket_errors: int
    p99_ms: float
    restart_seconds: float


def free_ports(count: int) -> int:
    """A port P with P … P+count-1 free (a cluster's nginx and instances).

    Below Linux's ephemeral range (32768-60999), where wrk's and nginx's
    outgoing connections take theirs.
    """
    for _ in range(200):
        base = random.randrange(20000, 32000 - count)
        if all(port_free(base + n) for n in range(count)):
            return base
    raise BenchError(f"no {count} consecutive free ports")


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers bind
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def keel_env(work_dir: Path, name: str, redis_url: str, drain_delay: float) -> dict[str, str]:
    return {
        **os.environ,
        "KEEL_SERVER__DATA_DIR": str(work_dir / name),
        "KEEL_REDIS__URL": redis_url,
        "KEEL_REDIS__KEY_PREFIX": f"keel-bench-{name}:",
        # The supervisor logs its progress at info; no access lines.
        "KEEL_LOGGING__LEVEL": "info",
        "KEEL_LOGGING__ACCESS_LOG": "false",
        "KEEL_SERVER__DRAIN_DELAY": str(drain_delay),
        "KEEL_RATELIMIT__DEFAULT": UNLIMITED,
    }


def pin(cores: str | None) -> list[str]:
    return ["taskset", "-c", cores] if cores is not None else []


@dataclass
class Server:
    """A `run.py serve` or `run.py cluster` process, its port and its log."""

    name: str
    process: subprocess.Popen[bytes]
    port: int
    log: Path
    work_dir: Path

    def nginx_pids(self) -> list[int]:
        master = int((self.work_dir / "cluster" / "nginx" / "nginx.pid").read_text())
        workers = subprocess.run(
            ["pgrep", "-P", str(master)], capture_output=True, text=True, check=False
        ).stdout.split()
        return [master, *map(int, workers)]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@contextlib.contextmanager
def started(name: str, argv: list[str], env: dict[str, str], work_dir: Path) -> Iterator[Server]:
    """Start `argv` (a `run.py` command; `{port}` filled in), wait for GET /healthz, stop it."""
    port = free_ports(4)
    log = work_dir / f"{name}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [part.replace("{port}", str(port)) for part in argv],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Server(name, process, port, log, Path(env["KEEL_SERVER__DATA_DIR"]))
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not answers(port, "/healthz"):
            if process.poll() is not None or time.monotonic() > deadline:
                raise BenchError(f"{name}: did not start ({process.returncode})", log)
            time.sleep(0.1)
        yield server
        if process.poll() is not None:
            raise BenchError(f"{name}: died under load ({process.returncode})", log)
    finally:
        server.stop()


def direct(
    layout: str, work_dir: Path, redis_url: str
) -> contextlib.AbstractContextManager[Server]:
    core = str(SERVER_CORE) if layout == "pinned" else None
    argv = [
        *pin(core),
        sys.executable,
        "run.py",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        "{port}",
    ]
    env = keel_env(work_dir, f"{layout}-direct", redis_url, drain_delay=0)
    return started(f"{layout}-direct", argv, env, work_dir)


@contextlib.contextmanager
def cluster(
    layout: str, instances: int, work_dir: Path, redis_url: str, drain_delay: float = 1.0
) -> Iterator[Server]:
    """`run.py cluster`; in the pinned layout its instances on core 0, nginx moved to core 1."""
    name = f"{layout}-nginx-{instances}"
    core = str(SERVER_CORE) if layout == "pinned" else None
    argv = [*pin(core), sys.executable, "run.py", "cluster", "--instances", str(instances)]
    argv += ["--port", "{port}"]
    env = keel_env(work_dir, name, redis_url, drain_delay)
    with started(name, argv, env, work_dir) as server:
        if layout == "pinned":
            for pid in server.nginx_pids():
                subprocess.run(
                    ["taskset", "-a", "-p", "-c", str(WRK_CORE), str(pid)],
                    capture_output=True,
                    check=True,
                )
        yield server


def wrk(
    layout: str, port: int, seconds: float, connections: int, script: Path, *, allow_errors: bool
) -> WrkResult:
    core = str(WRK_CORE) if layout == "pinned" else None
    command = [*pin(core), "wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--latency"]
    command += ["-s", str(script), f"http://127.0.0.1:{port}/"]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise BenchError(f"wrk exited {done.returncode}: {done.stderr.strip()}")
    result = parse_wrk(done.stdout)
    if result.non_2xx and not allow_errors:
        raise BenchError(f"{result.non_2xx} non-2xx responses:\n{done.stdout}")
    return result


def reads_script(server: Server) -> Path:
    ids = seed(server.port, SEED_ITEMS)
    return random_item_script(ids, server.work_dir.with_suffix(".reads.lua"))


def mixed_script(server: Server) -> Path:
    """3 GETs of a random item to 1 POST of a new one."""
    ids = ",".join(f'"{i}"' for i in seed(server.port, SEED_ITEMS))
    path = server.work_dir.with_suffix(".mixed.lua")
    path.write_text(
        f"local ids = {{{ids}}}\n"
        "local n = 0\n"
        "math.randomseed(42)\n"
        "request = function()\n"
        "  n = n + 1\n"
        "  if n % 4 == 0 then\n"
        '    local headers = {["Content-Type"] = "application/json"}\n'
        """    return wrk.format("POST", "/api/items", headers, '{"name": "wrk", "price": 1}')\n"""
        "  end\n"
        '  return wrk.format("GET", "/api/items/" .. ids[math.random(#ids)])\n'
        "end\n"
    )
    return path


def measure_layout(
    layout: str, work_dir: Path, redis_url: str, seconds: float, connections: int
) -> list[Row]:
    rows: list[Row] = []
    bursts = max(2, round(seconds / BURST_SECONDS))
    bursts += bursts % 2
    with direct(layout, work_dir, redis_url) as baseline:
        print(f"{layout}: direct up; seeding {SEED_ITEMS} items", flush=True)
        baseline_script = reads_script(baseline)
        wrk(layout, baseline.port, WARMUP_SECONDS, connections, baseline_script, allow_errors=False)
        baseline_runs: list[WrkResult] = []
        for instances in INSTANCES:
            with cluster(layout, instances, work_dir, redis_url) as server:
                print(f"{layout}: {instances} instance(s) behind nginx up; seeding", flush=True)
                script = reads_script(server)
                wrk(layout, server.port, WARMUP_SECONDS, connections, script, allow_errors=False)
                runs: list[WrkResult] = []
                ratios: list[float] = []
                for number in range(bursts):
                    # Who goes first alternates: a burst right after another runs on a warmer core.
                    pair = [(server, script), (baseline, baseline_script)]
                    for target, lua in pair if number % 2 else reversed(pair):
                        result = wrk(
                            layout, target.port, BURST_SECONDS, connections, lua, allow_errors=False
                        )
                        (runs if target is server else baseline_runs).append(result)
                    ratios.append(runs[-1].requests_per_sec / baseline_runs[-1].requests_per_sec)
                rows.append(
                    Row(
                        layout,
                        f"nginx-{instances}",
                        statistics.median(r.requests_per_sec for r in runs),
                        statistics.median(r.p99_ms for r in runs),
                        statistics.median(ratios),
                    )
                )
        rows.insert(
            0,
            Row(
                layout,
                "direct",
                statistics.median(r.requests_per_sec for r in baseline_runs),
                statistics.median(r.p99_ms for r in baseline_runs),
                1.0,
            ),
        )
    return rows


def rolling_restart(
    work_dir: Path, redis_url: str, seconds: float, connections: int
) -> RestartResult:
    with cluster("shared", 3, work_dir, redis_url, drain_delay=RESTART_DRAIN_DELAY) as server:
        print("restart: 3 instances behind nginx up; seeding", flush=True)
        script = mixed_script(server)
        wrk("shared", server.port, WARMUP_SECONDS, connections, script, allow_errors=False)
        command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--latency"]
        command += ["-s", str(script), f"http://127.0.0.1:{server.port}/"]
        load = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(2.0)
        hup = time.monotonic()
        server.process.send_signal(signal.SIGHUP)
        print("restart: SIGHUP sent under load", flush=True)
        while "rolling restart done" not in server.log.read_text(errors="replace"):
            if time.monotonic() - hup > seconds or server.process.poll() is not None:
                load.kill()
                raise BenchError("the rolling restart did not finish under load", server.log)
            time.sleep(0.05)
        restart_seconds = time.monotonic() - hup
        output, errors = load.communicate()
        if load.returncode != 0:
            raise BenchError(f"wrk exited {load.returncode}: {errors.strip()}")
        result = parse_wrk(output)
        return RestartResult(
            requests=result.requests,
            non_2xx=result.non_2xx,
            socket_errors=result.socket_errors,
            p99_ms=result.p99_ms,
            restart_seconds=restart_seconds,
        )


def report(rows: Sequence[Row], restart: RestartResult | None, connections: int) -> str:
    lines = [
        f"{'layout':<7}  {'scenario':<8}  {'requests/s':>11}  {'p99 (ms)':>8}  {'vs direct':>9}"
    ]
    for row in rows:
        lines.append(
            f"{row.layout:<7}  {row.scenario:<8}  {row.requests_per_sec:>11,.1f}"
            f"  {row.p99_ms:>8.2f}  {row.ratio:>9.2f}"
        )
    if restart is not None:
        lines += [
            "",
            f"rolling restart of 3 instances under wrk -t1 -c{connections} (3 GET : 1 POST):"
            f" {restart.requests} requests, restart took {restart.restart_seconds:.1f} s;"
            f" non-2xx {restart.non_2xx}, socket errors {restart.socket_errors},"
            f" p99 {restart.p99_ms:.1f} ms",
        ]
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=8, help="seconds of bursts per side")
    parser.add_argument("--connections", type=int, default=64, help="wrk open connections")
    parser.add_argument("--restart-seconds", type=float, default=20, help="wrk run of the restart")
    parser.add_argument(
        "--only", action="append", default=[], choices=[*LAYOUTS, "restart"], help="repeatable"
    )
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write results as JSON")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    wanted = args.only or [*LAYOUTS, "restart"]
    rows: list[Row] = []
    restart: RestartResult | None = None
    with tempfile.TemporaryDirectory(prefix="keel-bench-cluster-") as tmp:
        work_dir = Path(tmp)
        redis_port = free_port()
        redis_url = f"redis://127.0.0.1:{redis_port}/0"
        try:
            check_cores()
            with redis_server(redis_port):
                for layout in LAYOUTS:
                    if layout in wanted:
                        rows += measure_layout(
                            layout, work_dir, redis_url, args.duration, args.connections
                        )
                if "restart" in wanted:
                    restart = rolling_restart(
                        work_dir, redis_url, args.restart_seconds, args.connections
                    )
        except BenchError as exc:
            print(f"bench: error: {exc}", file=sys.stderr)
            if exc.log is not None:
                print(f"--- last lines of {exc.log.name} ---\n{log_tail(exc.log)}", file=sys.stderr)
            print(report(rows, restart, args.connections))  # what was measured before
            return 1
    print()
    print(
        f"GET /api/items/{{id}} (Redis cache hits), wrk -t1 -c{args.connections},"
        f" {args.duration:g} s of {BURST_SECONDS} s bursts per side; pinned: Keel on core"
        f" {SERVER_CORE}, nginx, wrk and Redis on core {WRK_CORE}; shared: only Redis pinned"
    )
    print(report(rows, restart, args.connections))
    if args.json is not None:
        payload = {
            "rows": [asdict(row) for row in rows],
            "restart": asdict(restart) if restart else None,
        }
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
