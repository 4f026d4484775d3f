"""The fault report (`bench/faults.py`): Keel under load while each dependency breaks.

ledger.py     what the clients saw: every request, acknowledged write, read, job and
              WebSocket message, and the accounting over them (stale reads, lost jobs,
              undelivered messages) — pure, tested on made-up histories
figures.py    one row per scenario out of the ledger: counts, declared degradations,
              time back to normal
load.py       the HTTP load: cached reads, writes, list pages, job submissions
jobs.py       follows every accepted job to its end through the API
sockets.py    WebSocket publishers and recovering subscribers
rig.py        the setup: private Redis, TCP proxies to RabbitMQ and two PostgreSQL
              shards, a cluster of instances behind nginx, workers
scenarios.py  the faults, each injected and healed on the rig
report.py     the table (terminal, Markdown, JSON) and a verdict per promise
cli.py        the run from start to end (`python bench/faults.py`)
"""
