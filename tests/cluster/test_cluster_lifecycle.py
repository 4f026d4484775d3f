"""`run.py cluster` refusing to start, and stopping on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.cluster.cluster_process import ClusterProcess, pid_alive, port_is_free
from tests.cluster.conftest import Services, cluster_toml
from tests.support.services import REPO


def run_cluster(tmp_path: Path, toml: str, *args: str, **env: str) -> subprocess.CompletedProcess:
    config = tmp_path / "cluster.toml"
    config.write_text(toml)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("KEEL_")}
    clean.update(env, KEEL_SERVER__DATA_DIR=str(tmp_path / "data"))
    return subprocess.run(
        [sys.executable, "run.py", "--config", str(config), "cluster", *args],
        cwd=REPO,
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_without_redis_the_cluster_refuses_in_one_line(tmp_path: Path) -> None:
    result = run_cluster(tmp_path, "", "--port", "18480")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "[redis] url is empty" in lines[0]
    assert "KEEL_REDIS__URL=" in lines[0]


def test_without_nginx_the_cluster_refuses_and_says_how_to_install_it(
    tmp_path: Path, redis_url: str
) -> None:
    toml = f'[redis]\nurl = "{redis_url}"\n'
    result = run_cluster(tmp_path, toml, "--nginx", "keel-test-no-such-nginx")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "nginx not found (keel-test-no-such-nginx)" in lines[0]
    assert "apt-get install nginx" in lines[0]


def test_a_drain_delay_too_short_for_nginx_is_refused(tmp_path: Path, redis_url: str) -> None:
    toml = f'[redis]\nurl = "{redis_url}"\n[server]\ndrain_delay = 0.0\n'
    result = run_cluster(tmp_path, toml)
    assert result.returncode == 2
    assert "server.drain_delay is 0" in result.stderr


async def test_sigterm_stops_every_instance_then_nginx_exit_0_and_frees_every_port(
    tmp_path: Path, services: Services, nginx_installed: None
) -> None:
    cluster = await ClusterProcess(tmp_path, cluster_toml(services), instances=2).start()
    try:
        pids = [cluster.pids(1)[-1], cluster.pids(2)[-1], cluster.nginx_pid()]
        cluster.signal(signal.SIGTERM)
        assert await cluster.exit_status() == 0
    finally:
        await cluster.stop()
    log = cluster.log()
    nginx_stopped = log.index(f"nginx (pid {pids[2]}) exited with status 0")
    for number, pid in ((1, pids[0]), (2, pids[1])):
        assert log.index(f"instance {number} (pid {pid}) exited with status 0") < nginx_stopped
    assert "cluster stopped" in log
    await asyncio.sleep(0)  # the processes were waited for: nothing may be left
    assert not [pid for pid in pids if pid_alive(pid)]
    assert all(port_is_free(port) for port in cluster.ports)


async def test_a_second_sigterm_stops_everything_at_once_with_status_1(
    tmp_path: Path, services: Services, nginx_installed: None
) -> None:
    toml = cluster_toml(services, drain_delay=20.0)
    cluster = await ClusterProcess(tmp_path, toml, instances=1).start()
    try:
        pids = [cluster.pids(1)[-1], cluster.nginx_pid()]
        cluster.signal(signal.SIGTERM)
        await cluster.wait_for_log("draining (/readyz answers 503) for 20.0s")
        cluster.signal(signal.SIGTERM)
        assert await cluster.exit_status(timeout=10) == 1  # well within the 20 s drain
    finally:
        await cluster.stop()
    assert "received SIGTERM again: stopping every instance and nginx now" in cluster.log()
    assert not [pid for pid in pids if pid_alive(pid)]
