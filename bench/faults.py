"""The fault report: Keel under a steady mixed load while each dependency breaks in turn.

    python bench/faults.py [--only redis-partition,...] [--fault-seconds 10] [--json out.json]

Starts a private redis-server, proxies to RabbitMQ and two PostgreSQL shard
databases made for the run, 3 instances behind nginx (`run.py cluster`) and 2
workers; loads them (cached reads, writes, list pages, jobs, WebSocket
subscribers); runs each scenario (bench/fault_report/scenarios.py); prints
one row per scenario, a verdict per promise, and the table as Markdown.

Exit status: 0 every promise held, 1 one did not (the report says which),
2 the run itself failed (the logs' directory is printed).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.fault_report.cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
