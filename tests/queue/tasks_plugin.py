"""`tests.queue.tasks_plugin:WatchedTasksPlugin`: tasks that let tests watch jobs run.

- `test.count` `{"key": s}`: counts its runs per key in `app[RUNS]`.
- `test.slow` (timeout 0.2 s) `{"seconds": s}`: sleeps; over 0.2 s it times out.
- `test.own_timeout` (timeout 0.2 s): raises a TimeoutError of its own at once.
- `test.block` `{"key": s}`: runs until the test sets `app[GATES][key]`.
- `test.bad_result`: returns something that is not JSON.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from aiohttp import web

from app.plugins import BasePlugin
from app.queue.tasks import TASKS, Field, JobContext, fields, task

RUNS = web.AppKey("tests.queue.runs", Counter)
GATES = web.AppKey("tests.queue.gates", dict)
STARTED = web.AppKey("tests.queue.started", dict)


@task("test.count", args=fields(key=Field(str)))
async def count(args: dict[str, Any], job: JobContext) -> dict[str, Any]:
    job.app[RUNS][args["key"]] += 1
    return {"key": args["key"], "attempt": job.attempt}


@task("test.slow", timeout=0.2, args=fields(seconds=Field(float, minimum=0)))
async def slow(args: dict[str, Any], job: JobContext) -> None:
    await asyncio.sleep(args["seconds"])


@task("test.own_timeout", timeout=0.2, args=fields())
async def own_timeout(args: dict[str, Any], job: JobContext) -> None:
    raise TimeoutError("the upstream did not answer")


@task("test.block", args=fields(key=Field(str)))
async def block(args: dict[str, Any], job: JobContext) -> str:
    gate = job.app[GATES].setdefault(args["key"], asyncio.Event())
    job.app[STARTED].setdefault(args["key"], asyncio.Event()).set()
    await gate.wait()
    return "released"


@task("test.bad_result")
async def bad_result(args: dict[str, Any], job: JobContext) -> Any:
    return {1, 2}


class WatchedTasksPlugin(BasePlugin):
    name = "test_tasks"
    requires = ("queue",)

    def setup(self, app: web.Application) -> None:
        app[RUNS] = Counter()
        app[GATES] = {}
        app[STARTED] = {}
        app[TASKS].add(count, slow, own_timeout, block, bad_result)
