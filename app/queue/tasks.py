"""Tasks: named async functions that jobs run, and the registry that knows them.

A task is an async function taking the job's args (a JSON object) and its
`JobContext`, returning a JSON-serializable result. Declaring one does not
register it anywhere — the module has no registry of its own — a plugin adds
its tasks to the queue's registry in `setup`:

    @task("reports.build", timeout=60, args=fields(day=Field(str)))
    async def build_report(args: dict[str, Any], job: JobContext) -> dict[str, Any]:
        ...

    class ReportsPlugin(BasePlugin):
        optional = ("queue",)

        def setup(self, app: web.Application) -> None:
            if TASKS in app:
                app[TASKS].add(build_report)

An exception (or the timeout) fails the attempt: the job is retried with
backoff until `max_attempts`, then dead. `args` validates a submission before
it is accepted (422 with one entry per problem).
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

from aiohttp import web

Problem = dict[str, str]  # {"field": "args.seconds", "message": "expected a number"}
ArgsCheck = Callable[[dict[str, Any]], list[Problem]]


@dataclass(frozen=True)
class JobContext:
    """What a running task may know about its job."""

    id: str
    task: str
    attempt: int  # 1 for the first run
    max_attempts: int
    app: web.Application  # to reach other plugins through their AppKeys


TaskFunction = Callable[[dict[str, Any], JobContext], Awaitable[Any]]


@dataclass(frozen=True)
class Task:
    name: str
    run: TaskFunction
    timeout: float | None = None  # None: `[queue] task_timeout`
    check_args: ArgsCheck | None = None

    def problems(self, args: dict[str, Any]) -> list[Problem]:
        return self.check_args(args) if self.check_args is not None else []


def task(
    name: str, *, timeout: float | None = None, args: ArgsCheck | None = None
) -> Callable[[TaskFunction], Task]:
    """Declare a task: `@task("demo.echo")` turns the function into a `Task`."""
    if timeout is not None and not timeout > 0:
        raise ValueError(f"task {name!r}: timeout must be > 0")

    def declare(function: TaskFunction) -> Task:
        return Task(name, function, timeout, args)

    return declare


class TaskRegistry:
    """The tasks this instance can run, by name; published as `app[TASKS]`."""

    def __init__(self) -> None:
        self._tasks: dict[str, Task] = {}

    def add(self, *tasks: Task) -> None:
        for added in tasks:
            if added.name in self._tasks and self._tasks[added.name] is not added:
                raise ValueError(f"task {added.name!r} is registered twice")
            self._tasks[added.name] = added

    def get(self, name: str) -> Task | None:
        return self._tasks.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._tasks

    def __iter__(self) -> Iterator[Task]:
        return iter(sorted(self._tasks.values(), key=lambda t: t.name))

    def names(self) -> list[str]:
        return sorted(self._tasks)


# --- args checks: small declarative validators for the common case -------------------


@dataclass(frozen=True)
class Field:
    """One field of a task's args: its type, whether it is required, its range."""

    type: type[int] | type[float] | type[str] | type[bool] | type[list[Any]] | type[dict[str, Any]]
    required: bool = True
    minimum: float | None = None
    maximum: float | None = None

    def problem(self, value: Any) -> str | None:
        if self.type is float:
            ok = isinstance(value, int | float) and not isinstance(value, bool)
            if ok and not math.isfinite(value):
                return "expected a finite number"
        elif self.type is int:
            ok = isinstance(value, int) and not isinstance(value, bool)
        else:
            ok = isinstance(value, self.type)
        if not ok:
            return f"expected {_TYPE_NAMES[self.type]}"
        if self.minimum is not None and value < self.minimum:
            return f"expected a value >= {self.minimum:g}"
        if self.maximum is not None and value > self.maximum:
            return f"expected a value <= {self.maximum:g}"
        return None


_TYPE_NAMES: dict[type[Any], str] = {
    int: "an integer",
    float: "a number",
    str: "a string",
    bool: "a boolean",
    list: "an array",
    dict: "an object",
}


def fields(**spec: Field) -> ArgsCheck:
    """An args check: exactly these fields (unknown ones are problems too)."""

    def check(args: dict[str, Any]) -> list[Problem]:
        problems: list[Problem] = []
        for key in sorted(set(args) - set(spec)):
            problems.append({"field": f"args.{key}", "message": "unknown field"})
        for key, field in spec.items():
            if key not in args:
                if field.required:
                    problems.append({"field": f"args.{key}", "message": "required"})
                continue
            if why := field.problem(args[key]):
                problems.append({"field": f"args.{key}", "message": why})
        return problems

    return check


TASKS = web.AppKey("keel.queue.tasks", TaskRegistry)
