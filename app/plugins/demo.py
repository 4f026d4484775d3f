"""The `demo` plugin: tasks to try the queue with, and the in-tree example of a plugin.

Tasks (DESIGN.md): `demo.echo` (result = args), `demo.sleep`
(`{"seconds": s}`), `demo.flaky` (`{"failures": n}`: fails its first n
attempts) and `demo.fail` (always fails). Try them:

    curl -s -XPOST localhost:8080/api/jobs -H 'Content-Type: application/json' \\
         -d '{"task": "demo.flaky", "args": {"failures": 2}}'

How it is built is how any plugin adds tasks: each task is declared with
`@task` (a plain value, registered nowhere), and the plugin adds them to the
queue's registry in `setup` — when the queue plugin is enabled; `optional`
orders `queue` first. The plugin holds no resource, so it keeps the default
`lifespan`. With the websocket plugin enabled it also lets clients publish on
`chat.*`.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from app.plugins import BasePlugin
from app.queue import TASKS, Field, JobContext, fields, task
from app.websocket import WEBSOCKET

# Channels WebSocket clients may publish on (a chat to try /ws with).
PUBLISH_CHANNELS = ("chat.*",)


class DemoFailure(Exception):
    """What demo.flaky and demo.fail raise: an ordinary task failure."""


@task("demo.echo")
async def echo(args: dict[str, Any], job: JobContext) -> dict[str, Any]:
    return args


@task(
    "demo.sleep",
    timeout=3600,
    args=fields(seconds=Field(float, minimum=0, maximum=3600)),
)
async def sleep(args: dict[str, Any], job: JobContext) -> dict[str, Any]:
    await asyncio.sleep(args["seconds"])
    return {"slept": args["seconds"]}


@task("demo.flaky", args=fields(failures=Field(int, minimum=0, maximum=100)))
async def flaky(args: dict[str, Any], job: JobContext) -> dict[str, Any]:
    if job.attempt <= args["failures"]:
        raise DemoFailure(f"failing on purpose: attempt {job.attempt} of {args['failures']}")
    return {"attempts": job.attempt}


@task("demo.fail", args=fields())
async def fail(args: dict[str, Any], job: JobContext) -> None:
    raise DemoFailure("demo.fail always fails")


class DemoPlugin(BasePlugin):
    name = "demo"
    optional = ("queue", "websocket")

    def setup(self, app: web.Application) -> None:
        if TASKS in app:
            app[TASKS].add(echo, sleep, flaky, fail)
        if WEBSOCKET in app:  # set up first: `optional` orders it before this plugin
            for pattern in PUBLISH_CHANNELS:
                app[WEBSOCKET].allow_publish(pattern)

    def state(self) -> dict[str, Any]:
        return {"tasks": [echo.name, sleep.name, flaky.name, fail.name]}
