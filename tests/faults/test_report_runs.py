"""`bench/faults.py` runs end to end on one short scenario, so the report cannot rot.

The real thing, shortened: 3 instances behind nginx, a private redis-server,
RabbitMQ and two PostgreSQL shards behind the script's proxies, the mixed load,
then the Redis partition for 3 s. Every promise must hold, and the JSON must
carry the figures the README's table is made of.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.queue.conftest import amqp_url
from tests.support.services import REPO, service_missing

__all__ = ["amqp_url"]  # the queue tests' fixture: RabbitMQ, or a skip (a failure under CI)


@pytest.mark.timeout(300)
def test_the_redis_partition_scenario_keeps_every_promise(
    tmp_path: Path, pg_admin_url: str, amqp_url: str
) -> None:
    for binary in ("nginx", "redis-server"):
        if shutil.which(binary, path="/usr/sbin:/usr/local/sbin:/usr/bin:/usr/local/bin") is None:
            service_missing(f"{binary} (Debian package {binary})")
    out = tmp_path / "report.json"
    command = [
        sys.executable,
        "bench/faults.py",
        "--only", "redis-partition",
        "--fault-seconds", "3",
        "--observe", "5",
        "--baseline", "3",
        "--pg", pg_admin_url,
        "--amqp", amqp_url,
        "--json", str(out),
    ]  # fmt: skip
    run = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=280)
    said = f"exit {run.returncode}\n{run.stdout[-6000:]}\n{run.stderr[-6000:]}"
    assert run.returncode == 0, said
    assert "PASS  0 stale reads" in run.stdout, said
    report = json.loads(out.read_text())
    baseline, partition = report["rows"]
    assert (baseline["scenario"], partition["scenario"]) == ("baseline", "redis-partition")
    assert partition["sent"] > 100, said
    assert partition["jobs"]["accepted"] > 5, said
    assert partition["messages"]["published"] > 10, said
    assert (partition["stale"], partition["unexplained"], partition["jobs"]["lost"]) == (
        0,
        0,
        [],
    ), said
    assert partition["messages"]["lost"] == 0, said
    assert partition["back_to_normal"] is not None, said
    assert partition["back_to_normal"] <= 5, said
    assert all(verdict["held"] for verdict in report["verdicts"]), said
    assert report["meta"]["command"].startswith("python bench/faults.py --only redis-partition")
