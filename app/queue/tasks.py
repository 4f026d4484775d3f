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
backoff until `max_attempts`, then dead. `args` (an `app.core.schema` declaration,
usually made with `fields()`) validates a submission before it is accepted (422
with one entry per problem) and describes the task's args in the OpenAPI document.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from app.core.schema import (
    AnyObject,
    AnyValue,
    Boolean,
    List,
    Number,
    Problem,
    Record,
    Schema,
    Text,
)


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
    args: Schema | None = None  # None: any object

    def problems(self, args: dict[str, Any]) -> list[Problem]:
        return self.args.problems(args, "args") if self.args is not None else []


def task(
    name: str, *, timeout: float | None = None, args: Schema | None = None
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


# --- args: a small declarative form for the common case -----------------------------


@dataclass(frozen=True)
class Field:
    """One field of a task's args: its type, whether it is required, its range."""

    type: type[int] | type[float] | type[str] | type[bool] | type[list[Any]] | type[dict[str, Any]]
    required: bool = True
    minimum: float | None = None
    maximum: float | None = None

    def schema(self) -> Schema:
        if self.type is int:
            return Number(self.minimum, self.maximum, integer=True)
        if self.type is float:
            return Number(self.minimum, self.maximum)
        if self.type is str:
            return Text(nul=True)  # stored escaped, inside the job's JSON
        if self.type is bool:
            return Boolean()
        if self.type is list:
            return List(AnyValue())
        return AnyObject()


@dataclass(frozen=True)
class Args(Record):
    """A task's args: a `Record` whose problems name `args.<field>`; call it to check some."""

    def __call__(self, args: Any) -> list[Problem]:
        return self.problems(args, "args")


def fields(**spec: Field) -> Args:
    """A task's args: exactly these fields (unknown ones are problems too)."""
    return Args(
        {name: f.schema() for name, f in spec.items()},
        required=tuple(name for name, f in spec.items() if f.required),
    )


TASKS = web.AppKey("keel.queue.tasks", TaskRegistry)
