"""What a client may submit as a job, checked before anything is written. Pure code.

`POST /api/jobs` body: `{"task": str, "args": {} (optional), "delay": seconds
(optional), "max_attempts": n (optional)}`. Every problem is reported at once,
one `{"field", "message"}` entry each; a task's own args check adds entries
for `args.<field>`. An `Idempotency-Key` header is 1..255 visible ASCII
characters, optionally as a quoted structured-field string
(`"8e03978e-40d5"`, as draft-ietf-httpapi-idempotency-key-header writes it).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from app.queue.tasks import Problem, TaskRegistry

MAX_DELAY = 30 * 86400.0  # seconds
MAX_ATTEMPTS = 100
_FIELDS = frozenset({"task", "args", "delay", "max_attempts"})
_KEY = re.compile(r"[\x21-\x7e]{1,255}")


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


def validate(body: Any, tasks: TaskRegistry, default_max_attempts: int) -> JobRequest:
    if not isinstance(body, dict):
        raise Rejected([{"field": "(body)", "message": "expected a JSON object"}])
    problems: list[Problem] = []

    def problem(field: str, message: str) -> None:
        problems.append({"field": field, "message": message})

    for key in sorted(set(body) - _FIELDS):
        problem(key, "unknown field")
    name = body.get("task")
    known = ", ".join(tasks.names()) or "none"
    if "task" not in body:
        problem("task", "required")
    elif not isinstance(name, str):
        problem("task", "expected a string")
    elif name not in tasks:
        problem("task", f'unknown task "{name[:200]}" (known tasks: {known})')
    args = body.get("args", {})
    if not isinstance(args, dict):
        problem("args", "expected an object")
    elif isinstance(name, str) and (declared := tasks.get(name)) is not None:
        problems.extend(declared.problems(args))
    delay = body.get("delay", 0)
    if isinstance(delay, bool) or not isinstance(delay, int | float):
        problem("delay", "expected a number of seconds")
    elif not math.isfinite(delay) or not 0 <= delay <= MAX_DELAY:
        problem("delay", f"expected 0..{MAX_DELAY:g} seconds")
    attempts = body.get("max_attempts", default_max_attempts)
    if isinstance(attempts, bool) or not isinstance(attempts, int):
        problem("max_attempts", "expected an integer")
    elif not 1 <= attempts <= MAX_ATTEMPTS:
        problem("max_attempts", f"expected 1..{MAX_ATTEMPTS}")
    if problems:
        raise Rejected(problems)
    assert isinstance(name, str)
    assert isinstance(args, dict)
    return JobRequest(name, args, float(delay), int(attempts))


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
