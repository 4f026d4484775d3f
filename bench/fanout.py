"""WebSocket fan-out benchmark: Keel's /ws against a bare aiohttp broadcast loop, in one run.

1000 subscribers on one instance, one publisher sending 200 messages at 20/s.
Reported for each server: delivered/expected, p50/p99 latency (publish to
receipt), server CPU per delivered frame (the server process's CPU time over
the publishing phase) and resident memory per idle connection. With history
on, also the recovery time for 100 missed messages: a subscriber leaves, 100
messages are published, and it comes back with `since` — from its new
connection's handshake to the `ok` that follows the 100 replayed messages
(median of 5).

Scenarios, each in a fresh server process pinned to core 0 (`taskset -c 0`):

- `bare`: aiohttp on uvloop, one /ws route; a publish is parsed, serialized
  once and sent with `for ws in subscribers: await ws.send_str(m)`.
- `keel`: `run.py serve` with metrics, redis (no URL), breakers, ratelimit and
  websocket: the production middlewares and the in-process bus; history off
  (`[websocket] history_size = 0`).
- `keel-history`: the same with history on (100 messages per channel, in process).
- `keel-redis`: `keel` with `[redis] url` on a private redis-server (started
  on core 1): every publication also goes through Redis pub/sub; history off.
- `keel-redis-history`: the same with history on, in Redis (every publication
  is one script that numbers, keeps and PUBLISHes it).

History's cost is each `-history` scenario against its twin without, from the
same run: server CPU per delivered frame (target: at most 1.15x) and latency.

The clients — 1001 raw WebSocket connections on one uvloop event loop — run in
this process, pinned to core 1, so they never compete with the server.

    python bench/fanout.py [--subscribers 1000] [--messages 200] [--rate 20]
                           [--only keel] [--rounds 1] [--json out.json]

A report, not a test: a missed target is marked MISSED and still exits 0; no
figure (a server that does not start, a connection refused) exits 1.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import typing
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import aiohttp
import orjson
import uvloop

REPO_ROOT = Path(__file__).resolve().parent.parent
SERVER_CORE = 0
CLIENT_CORE = 1
CHANNEL = "bench.fanout"
START_TIMEOUT = 30.0
SETTLE = 1.0  # idle seconds before memory is read, and after the last publish
TARGET_P99_MS = 30.0
TARGET_KB_PER_CONNECTION = 16.0
TARGET_HISTORY_COST = 1.15  # CPU per delivered frame, history on / off
MISSED = 100  # messages a recovering subscriber missed
RECOVERIES = 5
SCENARIOS = ["bare", "keel", "keel-history", "keel-redis", "keel-redis-history"]


class BenchError(Exception):
    """A run that produced no figure."""


# --- the bare server -------------------------------------------------------------------


def serve_bare(port: int) -> None:
    """The baseline: what a plain aiohttp broadcast looks like."""
    from aiohttp import WSMsgType, web

    subscribers: set[web.WebSocketResponse] = set()

    async def handle(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        try:
            async for message in ws:
                if message.type is not WSMsgType.TEXT:
                    continue
                frame = json.loads(message.data)
                if frame["op"] == "subscribe":
                    subscribers.add(ws)
                    await ws.send_str('{"op":"ok","ref":null}')
                elif frame["op"] == "publish":
                    m = json.dumps({"op": "message", "channel": CHANNEL, "data": frame["data"]})
                    for subscriber in list(subscribers):
                        await subscriber.send_str(m)
                    await ws.send_str('{"op":"ok","ref":null}')
        finally:
            subscribers.discard(ws)
        return ws

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.router.add_get("/ws", handle)
    app.router.add_get("/healthz", healthz)
    web.run_app(
        app,
        host="127.0.0.1",
        port=port,
        access_log=None,
        print=None,
        loop=uvloop.new_event_loop(),
    )


# --- a minimal WebSocket client (the load generator) -----------------------------------


class Client(asyncio.Protocol):
    """One raw WebSocket connection: handshake, masked frames out, frames in.

    Written against the socket so that the client side stays cheap: 1000 of
    them share one core while the server is measured.
    """

    def __init__(self, tally: Tally | None) -> None:
        self.tally = tally  # where deliveries are counted; None: a publisher
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.upgraded = False
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.replies: asyncio.Queue[dict[str, object]] = asyncio.Queue()
        self.received = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = typing.cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        transport = self.transport
        key = base64.b64encode(os.urandom(16)).decode()
        transport.write(
            (
                "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(exc or ConnectionError("closed during the handshake"))

    def send(self, text: bytes, opcode: int = 0x1) -> None:
        assert self.transport is not None
        mask = os.urandom(4)
        size = len(text)
        if size < 126:
            header = struct.pack("!BB", 0x80 | opcode, 0x80 | size)
        else:
            header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, size)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(text))
        self.transport.write(header + mask + masked)

    def data_received(self, data: bytes) -> None:
        now = time.monotonic_ns()
        if not self.upgraded:
            self.buffer += data
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(self.buffer[:12])
            data = bytes(self.buffer[end + 4 :])
            self.buffer.clear()
            if b" 101" not in status:
                self.opened.set_exception(ConnectionError(f"handshake refused: {status!r}"))
                return
            self.upgraded = True
            self.opened.set_result(None)
        elif self.buffer:
            self.buffer += data
            data = bytes(self.buffer)
            self.buffer.clear()
        # Frames are parsed in place: the client must cost far less than the server.
        at, size_of = 0, len(data)
        while size_of - at >= 2:
            opcode = data[at] & 0x0F
            size = data[at + 1] & 0x7F
            start = at + 2
            if size == 126:
                if size_of - at < 4:
                    break
                size = (data[at + 2] << 8) | data[at + 3]
                start = at + 4
            elif size == 127:
                if size_of - at < 10:
                    break
                size = struct.unpack_from("!Q", data, at + 2)[0]
                start = at + 10
            if start + size > size_of:
                break
            if opcode == 0x1:
                self.on_text(data, start, start + size, now)
            elif opcode == 0x9:  # ping
                self.send(data[start : start + size], opcode=0xA)
            at = start + size
        if at < size_of:
            self.buffer += data[at:]

    def on_text(self, data: bytes, start: int, end: int, now: int) -> None:
        # Keel writes '{"op":"message"', json.dumps '{"op": "message"': find, do not parse.
        if data.find(b"message", start, start + 20) < 0:
            self.replies.put_nowait(orjson.loads(data[start:end]))
            return
        self.received += 1
        if self.tally is not None:
            stamp = data.find(b'"t":', start, end) + 4
            while data[stamp] == 0x20:
                stamp += 1
            stop = stamp
            while 0x30 <= data[stop] <= 0x39:
                stop += 1
            self.tally.add(now - int(data[stamp:stop]))


class Tally:
    """Every delivery's latency (ns); `done` is set once `expected` have arrived."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.latencies: list[int] = []
        self.done = asyncio.Event()

    def add(self, latency: int) -> None:
        self.latencies.append(latency)
        if len(self.latencies) >= self.expected:
            self.done.set()


async def open_client(port: int, tally: Tally | None) -> Client:
    loop = asyncio.get_running_loop()
    _, client = await loop.create_connection(lambda: Client(tally), "127.0.0.1", port)
    await client.opened
    return client


# --- measuring the server ----------------------------------------------------------------


def cpu_ns(pid: int) -> int:
    """CPU time of every thread of `pid` so far (ns, from the scheduler's accounting)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError):
            total += int((task / "schedstat").read_text().split()[0])
    return total


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise BenchError(f"no VmRSS for pid {pid}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_listening(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BenchError(f"server exited ({process.returncode}):\n{log.read_text()[-3000:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise BenchError(f"server did not listen on {port} within {START_TIMEOUT}s")


@contextlib.contextmanager
def server(
    command: list[str], env: dict[str, str], port: int, workdir: Path
) -> Iterator[subprocess.Popen[bytes]]:
    log = workdir / f"server-{port}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            ["taskset", "-c", str(SERVER_CORE), *command],
            cwd=REPO_ROOT,
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_listening(port, process, log)
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def private_redis(workdir: Path) -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        ["taskset", "-c", str(CLIENT_CORE), "redis-server", "--port", str(port),
         "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(workdir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            if time.monotonic() > deadline:
                raise BenchError("the private redis-server did not start")
            time.sleep(0.02)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait()


def keel_config(workdir: Path, redis_url: str, history_size: int) -> Path:
    path = workdir / f"keel-{os.getpid()}-{time.monotonic_ns()}.toml"
    path.write_text(
        f"""
[server]
data_dir = "{workdir / "data"}"
drain_delay = 0.0

[plugins]
enabled = ["metrics", "redis", "breakers", "ratelimit", "websocket"]

[redis]
url = "{redis_url}"

[logging]
level = "warning"

[websocket]
publish_channels = ["bench.*"]
publish_limit = "1000/second"
history_size = {history_size}
"""
    )
    return path


# --- one scenario ------------------------------------------------------------------------


@dataclass
class Result:
    scenario: str
    delivered: int
    expected: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    cpu_us_per_frame: float
    kb_per_connection: float
    recovery_ms: float | None = None  # 100 missed messages, replayed (history on)


async def recovery_ms(port: int, publisher: Client) -> float:
    """Median time for a subscriber that missed MISSED messages to get them back."""
    url = f"http://127.0.0.1:{port}/ws"
    timings = []
    async with aiohttp.ClientSession() as session:
        for _ in range(RECOVERIES):
            async with session.ws_connect(url) as ws:
                await ws.send_str(orjson.dumps({"op": "subscribe", "channel": CHANNEL}).decode())
                ok = orjson.loads((await ws.receive()).data)
            for seq in range(MISSED):
                publisher.send(
                    orjson.dumps({"op": "publish", "channel": CHANNEL, "data": {"seq": seq}})
                )
            for _ in range(MISSED):
                reply = await asyncio.wait_for(publisher.replies.get(), 10)
                if reply.get("op") != "ok":
                    raise BenchError(f"publish refused: {reply}")
            since = {"offset": ok["offset"], "epoch": ok["epoch"]}
            started = time.perf_counter()
            async with session.ws_connect(url) as ws:
                await ws.send_str(
                    orjson.dumps({"op": "subscribe", "channel": CHANNEL, "since": since}).decode()
                )
                replayed = 0
                while (frame := orjson.loads((await ws.receive()).data))["op"] == "message":
                    replayed += 1
                timings.append(time.perf_counter() - started)
            if not frame.get("recovered") or replayed != MISSED:
                raise BenchError(f"recovery replayed {replayed}/{MISSED}: {frame}")
    return statistics.median(timings) * 1000


async def measure(name: str, pid: int, port: int, args: argparse.Namespace) -> Result:
    # Warm the server up (imports, first allocations), then read its resident memory.
    warm = [await open_client(port, None) for _ in range(20)]
    for client in warm:
        assert client.transport is not None
        client.transport.close()
    await asyncio.sleep(SETTLE)
    rss_before = rss_kb(pid)

    expected = args.messages * args.subscribers
    tally = Tally(expected)
    subscribers: list[Client] = []
    for start in range(0, args.subscribers, 50):
        batch = await asyncio.gather(
            *(open_client(port, tally) for _ in range(min(50, args.subscribers - start)))
        )
        for client in batch:
            client.send(orjson.dumps({"op": "subscribe", "channel": CHANNEL}))
        for client in batch:
            reply = await asyncio.wait_for(client.replies.get(), 10)
            if reply.get("op") != "ok":
                raise BenchError(f"subscribe refused: {reply}")
        subscribers.extend(batch)
    await asyncio.sleep(SETTLE)
    rss_after = rss_kb(pid)

    publisher = await open_client(port, None)
    interval = 1 / args.rate
    cpu_before = cpu_ns(pid)
    started = time.monotonic()
    for seq in range(args.messages):
        publisher.send(
            orjson.dumps(
                {
                    "op": "publish",
                    "channel": CHANNEL,
                    "data": {"seq": seq, "t": time.monotonic_ns(), "text": "hello, subscribers"},
                }
            )
        )
        await asyncio.sleep(max(0.0, started + (seq + 1) * interval - time.monotonic()))
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(tally.done.wait(), 10)
    cpu_after = cpu_ns(pid)
    delivered = sum(c.received for c in subscribers)
    for client in subscribers:
        assert client.transport is not None
        client.transport.close()
    for _ in range(args.messages):  # every publish answered: none is still in flight
        await asyncio.wait_for(publisher.replies.get(), 10)
    recovery = await recovery_ms(port, publisher) if name.endswith("-history") else None
    assert publisher.transport is not None
    publisher.transport.close()
    if not tally.latencies:
        raise BenchError(f"{name}: nothing was delivered")
    ordered = sorted(tally.latencies)
    return Result(
        scenario=name,
        delivered=delivered,
        expected=expected,
        p50_ms=ordered[len(ordered) // 2] / 1e6,
        p99_ms=ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] / 1e6,
        max_ms=ordered[-1] / 1e6,
        cpu_us_per_frame=(cpu_after - cpu_before) / 1e3 / max(1, delivered),
        kb_per_connection=(rss_after - rss_before) / args.subscribers,
        recovery_ms=recovery,
    )


def run_scenario(name: str, args: argparse.Namespace, workdir: Path) -> Result:
    port = free_port()
    with contextlib.ExitStack() as stack:
        if name == "bare":
            command = [sys.executable, str(Path(__file__).resolve()), "--serve-bare", str(port)]
            env: dict[str, str] = {}
        else:
            with_redis = name.startswith("keel-redis")
            redis_url = stack.enter_context(private_redis(workdir)) if with_redis else ""
            history_size = 100 if name.endswith("-history") else 0
            config = keel_config(workdir, redis_url, history_size)
            command = [
                sys.executable,
                "run.py",
                "--config",
                str(config),
                "serve",
                "--port",
                str(port),
            ]
            env = {"PYTHONPATH": str(REPO_ROOT)}
        process = stack.enter_context(server(command, env, port, workdir))
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(measure(name, process.pid, port, args))


# --- report ------------------------------------------------------------------------------


def report(results: dict[str, list[Result]]) -> str:
    def median(name: str, attr: str) -> float:
        return statistics.median(getattr(r, attr) for r in results[name])

    lines = [
        f"{'scenario':<20}{'delivered/expected':>20}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'CPU µs/frame':>14}{'KB/idle conn':>14}{f'recover {MISSED} ms':>17}"
    ]
    for name, runs in results.items():
        last = runs[-1]
        recoveries = [r.recovery_ms for r in runs if r.recovery_ms is not None]
        recovery = f"{statistics.median(recoveries):.1f}" if recoveries else "-"
        lines.append(
            f"{name:<20}{f'{last.delivered}/{last.expected}':>20}"
            f"{median(name, 'p50_ms'):>9.2f}{median(name, 'p99_ms'):>9.2f}"
            f"{median(name, 'cpu_us_per_frame'):>14.2f}{median(name, 'kb_per_connection'):>14.1f}"
            f"{recovery:>17}"
        )
    lines.append("")
    bare_cpu = median("bare", "cpu_us_per_frame") if "bare" in results else None
    for name in results:
        if name == "bare":
            continue
        checks = []
        cpu = median(name, "cpu_us_per_frame")
        if bare_cpu is not None:
            ok = cpu <= bare_cpu
            checks.append(
                f"CPU/frame {cpu / bare_cpu:.2f}x bare (<= 1.00) {'ok' if ok else 'MISSED'}"
            )
        p99 = median(name, "p99_ms")
        checks.append(
            f"p99 {p99:.1f} ms (<= {TARGET_P99_MS:g}) {'ok' if p99 <= TARGET_P99_MS else 'MISSED'}"
        )
        kb = median(name, "kb_per_connection")
        checks.append(
            f"{kb:.1f} KB/conn (<= {TARGET_KB_PER_CONNECTION:g})"
            f" {'ok' if kb <= TARGET_KB_PER_CONNECTION else 'MISSED'}"
        )
        lost = [r for r in results[name] if r.delivered != r.expected]
        if lost:
            checks.append("MISSED: messages lost")
        lines.append(f"{name}: " + "; ".join(checks))
    for name in results:
        twin = name.removesuffix("-history")
        if twin == name or twin not in results:
            continue
        # Round by round (the twin ran just before, in the same conditions), then the
        # median: a server's CPU per frame moves by a third from one round to the next
        # on this machine, and a ratio of two medians taken apart carries that noise.
        pairs = [
            run.cpu_us_per_frame / twin_run.cpu_us_per_frame
            for run, twin_run in zip(results[name], results[twin], strict=False)
        ]
        cost = statistics.median(pairs)
        verdict = "ok" if cost <= TARGET_HISTORY_COST else "MISSED"
        lines.append(
            f"history cost, {name} / {twin}: CPU/frame {cost:.2f}x (median of"
            f" {len(pairs)} round(s): {', '.join(f'{p:.2f}' for p in pairs)})"
            f" (<= {TARGET_HISTORY_COST:.2f}) {verdict}; p50"
            f" {median(name, 'p50_ms'):.2f} vs {median(twin, 'p50_ms'):.2f} ms, p99"
            f" {median(name, 'p99_ms'):.2f} vs {median(twin, 'p99_ms'):.2f} ms"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--rate", type=float, default=20.0, help="messages per second")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument(
        "--only", action="append", help=f"one of {SCENARIOS[1:]} (bare always runs)"
    )
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--serve-bare", type=int, metavar="PORT", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve_bare:
        serve_bare(args.serve_bare)
        return 0
    if (os.cpu_count() or 1) < 2 or shutil.which("taskset") is None:
        print("needs Linux, taskset and at least two CPU cores", file=sys.stderr)
        return 1
    os.sched_setaffinity(0, {CLIENT_CORE})
    scenarios = list(SCENARIOS)
    if args.only:
        scenarios = ["bare", *[s for s in scenarios if s in args.only and s != "bare"]]
    if shutil.which("redis-server") is None:
        print("redis-server not found: skipping the keel-redis scenarios", file=sys.stderr)
        scenarios = [s for s in scenarios if not s.startswith("keel-redis")]
    results: dict[str, list[Result]] = {name: [] for name in scenarios}
    with tempfile.TemporaryDirectory(prefix="keel-fanout-") as tmp:
        try:
            for _ in range(args.rounds):
                for name in scenarios:
                    results[name].append(run_scenario(name, args, Path(tmp)))
                    print(f"  {name}: {asdict(results[name][-1])}", file=sys.stderr)
        except (BenchError, OSError, TimeoutError) as exc:
            print(f"fan-out benchmark failed: {exc}", file=sys.stderr)
            return 1
    print(
        f"fan-out: {args.subscribers} subscribers, {args.messages} messages at {args.rate:g}/s,"
        f" server on core {SERVER_CORE}, clients on core {CLIENT_CORE}"
    )
    print(report(results))
    if args.json:
        Path(args.json).write_text(
            json.dumps({k: [asdict(r) for r in v] for k, v in results.items()}, indent=2)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
