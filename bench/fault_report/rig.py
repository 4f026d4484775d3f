"""The setup the faults are injected into, all on this machine and all private to one run.

- a private `redis-server` (SIGSTOP-able, killable: never the machine's Redis);
- two PostgreSQL shard databases made for the run (dropped after it), each
  reached through a TcpProxy this process controls;
- the machine's RabbitMQ through a TcpProxy, under queue names of the run's own;
- `run.py cluster`: N instances behind nginx (the shipped deploy/nginx config),
  not consuming jobs, as in deploy/docker-compose.yml;
- `run.py worker` processes that run the jobs.

Every Keel process reads one config file (`config_toml`); the proxies run in
this process's event loop, beside the load.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import aiormq

from tests.cluster.cluster_process import ClusterProcess
from tests.support.postgres import create_database, drop_database, run_as_admin
from tests.support.private_redis import PrivateRedis
from tests.support.process import KeelProcess
from tests.support.services import REPO, free_port
from tests.support.tcp_proxy import TcpProxy

STOP_TIMEOUT = 30.0


@dataclass(frozen=True)
class RigOptions:
    pg_admin_url: str
    amqp_url: str
    instances: int = 3
    workers: int = 2


def through(proxy: TcpProxy, url: str) -> str:
    """`url` with its host and port replaced by the proxy's (credentials kept)."""
    parts = urlsplit(url)
    credentials = parts.netloc.rpartition("@")[0]
    netloc = f"{credentials}@{proxy.address}" if credentials else proxy.address
    return urlunsplit(parts._replace(netloc=netloc))


def config_toml(
    *, redis_url: str, key_prefix: str, amqp_url: str, queue: str, shards: list[str]
) -> str:
    shard_list = ", ".join(f'"{dsn}"' for dsn in shards)
    return f"""# Written by bench/faults.py for one run: the defaults of config.toml but these.
[server]
shutdown_timeout = 10.0

[redis]
url = "{redis_url}"
key_prefix = "{key_prefix}"

[amqp]
url = "{amqp_url}"

[queue]
name = "{queue}"
# Jobs run in the workers, as in deploy/docker-compose.yml.
consume = false

[sharding]
shards = [{shard_list}]

[ratelimit]
# The load comes from one address standing for many clients.
default = "100000/second"

[admin]
token = "faults"

[logging]
access_log = false
"""


class WorkerProcess(KeelProcess):
    """`run.py worker`: jobs only; /healthz, /readyz and /metrics on its own port."""

    def __init__(self, workdir: Path, toml: str) -> None:
        workdir.mkdir(parents=True)
        super().__init__(workdir, toml, "worker")
        self.env["KEEL_WORKER__PORT"] = str(self.port)

    async def start(self) -> WorkerProcess:
        with self.log_path.open("wb") as log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "run.py",
                "--config",
                str(self.config_path),
                "worker",
                cwd=REPO,
                env=self.env,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
            )
        await self.wait_until(lambda: self.answers("/readyz"), what="the worker to be ready")
        return self

    async def running_jobs(self) -> float:
        """`keel_jobs_running` from its /metrics (0 when it does not answer)."""
        import aiohttp

        try:
            async with (
                aiohttp.ClientSession() as session,
                session.get(f"{self.url}/metrics") as response,
            ):
                text = await response.text()
        except aiohttp.ClientError:
            return 0.0
        for line in text.splitlines():
            if line.startswith("keel_jobs_running "):
                return float(line.split()[1])
        return 0.0

    async def stop(self) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.proc.wait(), STOP_TIMEOUT)
        except TimeoutError:
            await self.kill()


class Rig:
    """Everything a run needs; `async with Rig(...)` starts it and takes it all down."""

    def __init__(self, workdir: Path, run_id: str, options: RigOptions) -> None:
        self.workdir = workdir
        self.run_id = run_id
        self.options = options
        self.databases = [f"keel_faults_{run_id}_{n}" for n in range(2)]
        self.queue = f"keel-faults-{run_id}"
        self.redis: PrivateRedis | None = None
        self.redis_port = free_port()
        pg = urlsplit(options.pg_admin_url)
        amqp = urlsplit(options.amqp_url)
        self.shard_proxies = [
            TcpProxy(pg.hostname or "127.0.0.1", pg.port or 5432) for _ in self.databases
        ]
        self.amqp_proxy = TcpProxy(amqp.hostname or "127.0.0.1", amqp.port or 5672)
        self.cluster: ClusterProcess | None = None
        self.workers: list[WorkerProcess] = []
        self._generation = 0
        self._stack = contextlib.AsyncExitStack()
        self.toml = ""

    @property
    def url(self) -> str:
        assert self.cluster is not None
        return self.cluster.url

    @property
    def access_log(self) -> Path:
        assert self.cluster is not None
        return self.cluster.nginx_dir / "access.log"

    async def __aenter__(self) -> Rig:
        try:
            await self._start()
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._stack.aclose()

    async def _start(self) -> None:
        stack = self._stack
        self.start_redis()
        stack.callback(self._stop_redis)
        await run_as_admin(self.options.pg_admin_url, [create_database(n) for n in self.databases])
        stack.push_async_callback(self._drop_databases)
        for proxy in [*self.shard_proxies, self.amqp_proxy]:
            await proxy.start()
            stack.push_async_callback(proxy.close)
        stack.push_async_callback(self._delete_queues)
        base = self.options.pg_admin_url.rsplit("/", 1)[0]
        shards = [
            through(proxy, f"{base}/{name}")
            for proxy, name in zip(self.shard_proxies, self.databases, strict=True)
        ]
        self.toml = config_toml(
            redis_url=f"redis://127.0.0.1:{self.redis_port}/0",
            key_prefix=f"keel-faults:{self.run_id}:",
            amqp_url=through(self.amqp_proxy, self.options.amqp_url),
            queue=self.queue,
            shards=shards,
        )
        cluster_dir = self.workdir / "cluster"
        cluster_dir.mkdir()
        self.cluster = ClusterProcess(cluster_dir, self.toml, instances=self.options.instances)
        stack.push_async_callback(self.cluster.stop)
        await self.cluster.start()
        stack.push_async_callback(self._stop_workers)
        await asyncio.gather(*(self.start_worker() for _ in range(self.options.workers)))

    # --- Redis ------------------------------------------------------------------------

    def start_redis(self) -> None:
        directory = self.workdir / "redis"
        directory.mkdir()
        self.redis = PrivateRedis(directory, self.redis_port)

    def _stop_redis(self) -> None:
        if self.redis is not None:
            self.redis.stop()

    # --- workers ----------------------------------------------------------------------

    async def start_worker(self) -> WorkerProcess:
        self._generation += 1
        worker = WorkerProcess(self.workdir / f"worker-{self._generation}", self.toml)
        self.workers.append(worker)
        await worker.start()
        return worker

    def live_workers(self) -> list[WorkerProcess]:
        return [w for w in self.workers if w.proc is not None and w.proc.returncode is None]

    async def _stop_workers(self) -> None:
        await asyncio.gather(*(worker.stop() for worker in self.workers))

    # --- instances --------------------------------------------------------------------

    def instance_pid(self, number: int) -> int:
        assert self.cluster is not None
        return self.cluster.pids(number)[-1]

    def instance_port(self, number: int) -> int:
        assert self.cluster is not None
        return self.cluster.port + number

    # --- cleanup ----------------------------------------------------------------------

    async def _drop_databases(self) -> None:
        await run_as_admin(self.options.pg_admin_url, [drop_database(n) for n in self.databases])

    async def _delete_queues(self) -> None:
        with contextlib.suppress(OSError, aiormq.exceptions.AMQPError, TimeoutError):
            async with asyncio.timeout(10):
                connection = await aiormq.connect(self.options.amqp_url)
                try:
                    channel = await connection.channel()
                    for suffix in ("jobs", "dead"):
                        await channel.queue_delete(f"{self.queue}.{suffix}")
                finally:
                    await connection.close()

    def remove_workdir(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)
