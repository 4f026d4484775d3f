"""Request bodies declared once: a declaration validates and is its own JSON Schema.

The same object checks what a client sent — every problem at once, one
`{"field", "message"}` entry each (422 `invalid`) — and describes it in the
OpenAPI document (`json_schema()`), so the document cannot drift from what the
server accepts. Field paths read as a client writes them: `name`,
`args.seconds`, `tags[1]`.

    ITEM = Record(
        {"name": Text(1, 200), "price": Number(minimum=0), "tags": List(Text(1, 100))},
        required=("name", "price"),
    )
    problems = ITEM.problems(body)      # [] when valid
    ITEM.json_schema()                  # {"type": "object", "additionalProperties": false, …}
"""

from __future__ import annotations

import math
import sys
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

Problem = dict[str, str]  # {"field": "args.seconds", "message": "expected a number"}

# The largest JSON number a double holds: a larger one (1e400) is no finite price.
LARGEST = sys.float_info.max


def _at(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


class Schema(ABC):
    """One value's declaration: what it must be, and how the document shows it."""

    @abstractmethod
    def check(self, value: Any, path: str, problems: list[Problem]) -> None:
        """Add a problem for each way `value` (found at `path`) is not what is declared."""

    @abstractmethod
    def json_schema(self) -> dict[str, Any]: ...

    def problems(self, value: Any, path: str = "") -> list[Problem]:
        found: list[Problem] = []
        self.check(value, path or "(body)", found)
        return found


def _problem(problems: list[Problem], path: str, message: str) -> None:
    problems.append({"field": path, "message": message})


@dataclass(frozen=True)
class Text(Schema):
    """A string of `min_length`..`max_length` characters; without a NUL (PostgreSQL's text
    holds none) unless `nul` says it is only ever stored escaped, inside JSON."""

    min_length: int = 0
    max_length: int | None = None
    nul: bool = False
    description: str = ""
    format: str = ""  # for the document only ("date-time")

    def check(self, value: Any, path: str, problems: list[Problem]) -> None:
        if not isinstance(value, str):
            _problem(problems, path, "expected a string")
            return
        longest = self.max_length
        if len(value) < self.min_length or (longest is not None and len(value) > longest):
            bounds = (
                f"{self.min_length}..{longest}" if longest is not None else f">= {self.min_length}"
            )
            _problem(problems, path, f"expected {bounds} characters, got {len(value)}")
        elif not self.nul and "\x00" in value:
            _problem(problems, path, "must not contain NUL characters")

    def json_schema(self) -> dict[str, Any]:
        schema: dict[str, Any] = {"type": "string"}
        if not self.nul:
            schema["pattern"] = "^[^\\u0000]*$"
        if self.min_length:
            schema["minLength"] = self.min_length
        if self.max_length is not None:
            schema["maxLength"] = self.max_length
        if self.format:
            schema["format"] = self.format
        return _described(schema, self.description)


@dataclass(frozen=True)
class Choice(Schema):
    """One of the names `names()` lists now (registered tasks, say)."""

    names: Callable[[], Sequence[str]]
    noun: str
    description: str = ""

    def check(self, value: Any, path: str, problems: list[Problem]) -> None:
        if not isinstance(value, str):
            _problem(problems, path, "expected a string")
        elif value not in self.names():
            known = ", ".join(self.names()) or "none"
            _problem(
                problems, path, f'unknown {self.noun} "{value[:200]}" (known {self.noun}s: {known})'
            )

    def json_schema(self) -> dict[str, Any]:
        return _described({"type": "string", "enum": list(self.names())}, self.description)


@dataclass(frozen=True)
class Number(Schema):
    """A finite number (`integer=True`: an integer) in [`minimum`, `maximum`]; never a boolean."""

    minimum: float | None = None
    maximum: float | None = None
    integer: bool = False
    description: str = ""

    def check(self, value: Any, path: str, problems: list[Problem]) -> None:
        # JSON Schema's integer is any number without a fraction: 76.0 is one.
        whole = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
        if isinstance(value, bool) or not isinstance(value, int | float):
            _problem(problems, path, "expected an integer" if self.integer else "expected a number")
        elif self.integer and not whole:
            _problem(problems, path, "expected an integer")
        elif not self.integer and not math.isfinite(value):
            _problem(problems, path, "expected a finite number")
        elif self.minimum is not None and value < self.minimum:
            _problem(problems, path, f"expected a value >= {self.minimum:g}")
        elif self.maximum is not None and value > self.maximum:
            _problem(problems, path, f"expected a value <= {self.maximum:g}")

    def json_schema(self) -> dict[str, Any]:
        schema: dict[str, Any] = {"type": "integer" if self.integer else "number"}
        if self.minimum is not None:
            schema["minimum"] = self.minimum
        schema["maximum"] = self.maximum if self.maximum is not None else LARGEST
        if self.integer and self.maximum is None:
            del schema["maximum"]  # Python's ints are unbounded; the store says otherwise
        return _described(schema, self.description)


@dataclass(frozen=True)
class List(Schema):
    """An array of at most `max_items` values, each `items`; a bad one is reported at `path[i]`."""

    items: Schema
    max_items: int | None = None
    description: str = ""

    def check(self, value: Any, path: str, problems: list[Problem]) -> None:
        if not isinstance(value, list):
            _problem(problems, path, "expected an array")
            return
        if self.max_items is not None and len(value) > self.max_items:
            _problem(problems, path, f"expected at most {self.max_items} items, got {len(value)}")
            return
        for index, item in enumerate(value):
            self.items.check(item, f"{path}[{index}]", problems)

    def json_schema(self) -> dict[str, Any]:
        schema: dict[str, Any] = {"type": "array", "items": self.items.json_schema()}
        if self.max_items is not None:
            schema["maxItems"] = self.max_items
        return _described(schema, self.description)


@dataclass(frozen=True)
class Typed(Schema):
    """A value of one JSON type, nothing more checked (see `Boolean`, `AnyObject`)."""

    python_type: type
    json_type: str
    noun: str
    description: str = ""

    def check(self, value: Any, path: str, problems: list[Problem]) -> None:
        if not isinstance(value, self.python_type):
            _problem(problems, path, f"expected {self.noun}")

    def json_schema(self) -> dict[str, Any]:
        return _described({"type": self.json_type}, self.description)


def Boolean(description: str = "") -> Typed:  # named like a class: read as the others are
    return Typed(bool, "boolean", "a boolean", description)


def AnyObject(description: str = "") -> Typed:
    """Any JSON object: its content is someone else's to check."""
    return Typed(dict, "object", "an object", description)


@dataclass(frozen=True)
class AnyValue(Schema):
    """Anything at all (a field the server accepts and ignores)."""

    description: str = ""

    def check(self, value: Any, path: str, problems: list[Problem]) -> None:
        return None

    def json_schema(self) -> dict[str, Any]:
        return _described({}, self.description)


@dataclass(frozen=True)
class Record(Schema):
    """An object with exactly these fields: unknown ones are problems, `required` must be there.

    Unknown fields come first (sorted), then the declared ones in order.
    """

    fields: Mapping[str, Schema]
    required: tuple[str, ...] = ()
    description: str = ""

    def check(self, value: Any, path: str, problems: list[Problem]) -> None:
        if not isinstance(value, dict):
            _problem(
                problems,
                path,
                "expected a JSON object" if path == "(body)" else "expected an object",
            )
            return
        prefix = "" if path == "(body)" else path
        for key in sorted(set(value) - set(self.fields)):
            _problem(problems, _at(prefix, key), "unknown field")
        for key, declared in self.fields.items():
            if key not in value:
                if key in self.required:
                    _problem(problems, _at(prefix, key), "required")
                continue
            declared.check(value[key], _at(prefix, key), problems)

    def json_schema(self) -> dict[str, Any]:
        schema: dict[str, Any] = {
            "type": "object",
            "properties": {key: s.json_schema() for key, s in self.fields.items()},
            "additionalProperties": False,
        }
        if self.required:
            schema["required"] = list(self.required)
        return _described(schema, self.description)


def _described(schema: dict[str, Any], description: str) -> dict[str, Any]:
    if description:
        schema["description"] = description
    return schema
