"""What a client may submit as a job, checked before anything is written. Pure code.

`POST /api/jobs` body: `{"task": str, "args": {} (optional), "delay": seconds
(optional), "max_attempts": n (optional)}`. Every problem is reported at once,
one `{"field", "message"}` entry each; a task's own args check adds entries
for `args.<field>`. An `Idempotency-Key` header is 1..255 visible ASCII
characters, optionally as a quoted structured-field string
(`"8e03978e-40d5"`, as draft-ietf-httpapi-idempotency-key-header writes it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from app.core.schema import AnyObject, Choice, Number, Problem, Record, Schema
from app.queue.tasks import TaskRegistry

MAX_DELAY = 30 * 86400.0  # seconds
MAX_ATTEMPTS = 100
_KEY = re.compile(r"[!-~]{1,255}")
# The same rule as one pattern (for the OpenAPI document): 1..255 visible ASCII
# characters, optionally as a quoted string; a value that starts and ends with a
# quote is a quoted one (so `""` is no key).
IDEMPOTENCY_KEY_PATTERN = r'"[!-~]{1,255}"|[!#-~][!-~]{0,254}|[!-~]{0,254}[!#-~]|"'


@dataclass(frozen=True)
class JobRequest:
    task: str
    args: dict[str, Any]
    delay: float
    max_attempts: int


class Rejected(Exception):
    """The submission is not valid; `problems` lists every `{"field", "message"}`."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(f"{p['field']}: {p['message']}" for p in problems))
        self.problems = problems


class JobBody(Schema):
    """What `POST /api/jobs` accepts, with each registered task's own `args`.

    The `task` and the fields beside it are checked first; a known task's args
    then by that task's declaration (`@task(args=...)`), reported as `args.<field>`.
    """

    def __init__(self, tasks: TaskRegistry) -> None:
        self.tasks = tasks
        self.common = Record(
            {
                "task": Choice(tasks.names, "task", "A registered task, e.g. demo.echo"),
                "args": AnyObject("The task's arguments (checked by the task)"),
                "delay": Number(0, MAX_DELAY, description="Seconds before the first attempt"),
                "max_attempts": Number(
                    1, MAX_ATTEMPTS, integer=True, description="Attempts before it is dead"
                ),
            },
            required=("task",),
        )

    def request(self, body: Any, default_max_attempts: int) -> JobRequest:
        """The request, or `Rejected` listing every problem."""
        problems = self.problems(body)
        if problems:
            raise Rejected(problems)
        return JobRequest(
            body["task"],
            body.get("args", {}),
            float(body.get("delay", 0)),
            int(body.get("max_attempts", default_max_attempts)),
        )

    def check(self, value: Any, path: str, problems: list[Problem]) -> None:
        found: list[Problem] = []
        self.common.check(value, path, found)
        if isinstance(value, dict) and isinstance(name := value.get("task"), str):
            declared = self.tasks.get(name)
            args = value.get("args", {})
            if declared is not None and isinstance(args, dict):
                # Right after `args`' own entries: a body reads in the order it is written.
                at = next(
                    (i for i, p in enumerate(found) if p["field"] in ("delay", "max_attempts")),
                    len(found),
                )
                found[at:at] = declared.problems(args)
        problems.extend(found)

    def json_schema(self) -> dict[str, Any]:
        schema = self.common.json_schema()
        per_task = [
            {
                "if": {"properties": {"task": {"const": task.name}}, "required": ["task"]},
                "then": _args_of(task.args),
            }
            for task in self.tasks
            if task.args is not None
        ]
        if per_task:
            schema["allOf"] = per_task
        return schema


def _args_of(args: Schema) -> dict[str, Any]:
    """`args` as one task declares them; required when it requires a field (`{}` would lack it)."""
    then: dict[str, Any] = {"properties": {"args": args.json_schema()}}
    if isinstance(args, Record) and args.required:
        then["required"] = ["args"]
    return then


def validate(body: Any, tasks: TaskRegistry, default_max_attempts: int) -> JobRequest:
    """The request, or `Rejected` listing every problem (`JobBody` says what is valid;
    a caller that validates on every request keeps one `JobBody`, as `JobQueue.body`)."""
    return JobBody(tasks).request(body, default_max_attempts)


def idempotency_key(header: str | None) -> str | None:
    """The key of an `Idempotency-Key` header (None without one); `Rejected` if malformed."""
    if header is None:
        return None
    key = header.strip()
    if len(key) >= 2 and key[0] == key[-1] == '"':
        key = key[1:-1]
    if not _KEY.fullmatch(key):
        raise Rejected(
            [{"field": "Idempotency-Key", "message": "expected 1..255 visible ASCII characters"}]
        )
    return key
