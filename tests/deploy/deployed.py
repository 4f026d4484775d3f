"""Keel as deployed, on this machine's services, with every plugin exercised.

The shard databases are made by the compose stack's init script
(deploy/postgres/init-shards.sh); `run.py migrate` migrates them as the
`migrate` service and Job do; `run.py serve` and `run.py worker` run on
deploy/k8s/config.toml with the secrets a Secret would give them (Redis,
RabbitMQ, two PostgreSQL shards), plus what the exercise needs: a tight rate
limit on one route and an upstream that refuses connections.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from tests.deploy.conftest import INIT_SHARDS, K8S, clean_env, debian_tool
from tests.queue.processes import QueueProcess
from tests.support.services import REPO, free_port

EXERCISE_CONFIG = """
# The exercise: a limit the second list request exceeds, and an upstream whose
# breaker opens after two refused connections.
[[ratelimit.rules]]
path = "/api/items"
method = "GET"
limit = "1/minute"

[upstreams.down]
url = "http://127.0.0.1:{dead_port}"
timeout = 2.0

[breakers."upstream.down"]
minimum_calls = 2
window = 2
"""
WS_CHANNEL = "chat.deploy"
ITEMS = 8  # enough for both shards to own some


@dataclass
class Exposed:
    """What `/metrics` of the serving instance and of the worker showed, together."""

    samples: list[Sample] = field(default_factory=list)
    names: set[str] = field(default_factory=set)
    labels: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))

    def add(self, exposition: str) -> None:
        for family in text_string_to_metric_families(exposition):
            for sample in family.samples:
                self.samples.append(sample)
                self.names.add(sample.name)
                self.labels[sample.name].update(sample.labels)

    def value(self, name: str, **labels: str) -> float:
        return sum(
            s.value for s in self.samples if s.name == name and labels.items() <= s.labels.items()
        )


def create_shard_databases(admin_url: str, names: list[str]) -> None:
    """Run the compose init script against this machine's PostgreSQL."""
    debian_tool("psql", "postgresql-client")
    user = urlsplit(admin_url).username or "postgres"
    result = subprocess.run(
        ["sh", str(INIT_SHARDS)],
        env=clean_env(
            POSTGRES_USER=user, POSTGRES_DB=admin_url, KEEL_SHARD_DATABASES=" ".join(names)
        ),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def deployed_config() -> str:
    return (K8S / "config.toml").read_text() + EXERCISE_CONFIG.format(dead_port=free_port())


async def migrate(config: Path, env: dict[str, str]) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "run.py",
        "--config",
        str(config),
        "migrate",
        cwd=REPO,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    assert process.returncode == 0, output.decode()


async def exercise(http: aiohttp.ClientSession, serve: QueueProcess) -> None:
    """Items, cache, rate limit, breaker, jobs and WebSocket, each at least once."""
    url = serve.url
    ids = []
    for n in range(ITEMS):
        async with http.post(f"{url}/api/items", json={"name": f"deploy {n}", "price": n}) as r:
            assert r.status == 201, await r.text()
            ids.append((await r.json())["id"])
    for _ in range(2):  # the second read is a cache hit
        async with http.get(f"{url}/api/items/{ids[0]}") as r:
            assert r.status == 200, await r.text()
    async with http.put(f"{url}/api/items/{ids[1]}", json={"name": "renamed", "price": 1}) as r:
        assert r.status == 200, await r.text()
    async with http.delete(f"{url}/api/items/{ids[2]}") as r:
        assert r.status == 204
    statuses = []
    for _ in range(2):
        async with http.get(f"{url}/api/items") as r:
            statuses.append(r.status)
    assert statuses == [200, 429]
    statuses = []
    for _ in range(3):
        async with http.get(f"{url}/api/upstream/down/anything") as r:
            statuses.append(r.status)
    assert statuses == [502, 502, 503]
    echo = await serve.post_job("demo.echo", args={"hello": "deploy"})
    fail = await serve.post_job("demo.fail", max_attempts=1)
    await serve.wait_for_job(echo["id"], "succeeded")
    await serve.wait_for_job(fail["id"], "dead")
    async with http.ws_connect(f"{url}/ws") as ws:
        await ws.send_json({"op": "subscribe", "channel": WS_CHANNEL, "ref": 1})
        assert (await ws.receive_json(timeout=5))["op"] == "ok"
        await ws.send_json({"op": "publish", "channel": WS_CHANNEL, "data": {"n": 1}, "ref": 2})
        ops = set()
        while "message" not in ops:
            ops.add((await ws.receive_json(timeout=5))["op"])


async def scrape(http: aiohttp.ClientSession, url: str) -> str:
    async with http.get(f"{url}/metrics") as r:
        assert r.status == 200
        return await r.text()


async def run_deployed(tmp: Path, secrets: dict[str, str]) -> Exposed:
    """Migrate, serve and work; exercise; scrape both; stop both (SIGTERM, exit 0).

    Both processes keep their server.data_dir in `tmp / "data"` (KeelProcess).
    """
    env = {**secrets, "KEEL_SERVER__DRAIN_DELAY": "0", "KEEL_SERVER__SHUTDOWN_TIMEOUT": "2"}
    serve = QueueProcess(tmp, "serve", "serve", env)
    worker = QueueProcess(tmp, "worker", "worker", env)
    for process in (serve, worker):
        process.config_path.write_text(deployed_config())
    await migrate(serve.config_path, serve.env)
    exposed = Exposed()
    try:
        await serve.start()
        await worker.start()
        async with aiohttp.ClientSession() as http:
            await exercise(http, serve)
            exposed.add(await scrape(http, serve.url))
            exposed.add(await scrape(http, worker.url))
        for process in (serve, worker):
            process.signal(signal.SIGTERM)
        for process in (serve, worker):
            assert await process.exit_status() == 0, process.log()
    finally:
        await serve.kill()
        await worker.kill()
    return exposed


def files_under(directory: Path) -> list[str]:
    if not directory.exists():
        return []
    return sorted(str(path.relative_to(directory)) for path in directory.rglob("*"))


def shard_dsns(admin_url: str, names: list[str]) -> str:
    base = admin_url.rsplit("/", 1)[0]
    return json.dumps([f"{base}/{name}" for name in names])
