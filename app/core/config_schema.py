"""Turn raw TOML data into frozen, typed dataclasses, collecting every problem.

A config section is a frozen dataclass. Each field's type drives conversion:
`bool`, `int`, `float`, `str`, `Secret`, `SecretUrl`, `Literal[...]`,
`tuple[T, ...]`, `Mapping[str, Section]` and nested sections. A field may carry
`metadata={"check": fn}` where `fn(value)` returns a problem text or None.
Problems are collected (never raised one by one) as "key.path: why" lines.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, Literal, TypeVar, Union, get_args, get_origin
from urllib.parse import urlsplit, urlunsplit

T = TypeVar("T")

Check = Callable[[Any], "str | None"]

_MASK = "***"


class Secret:
    """A secret value (a token): its repr and str never show it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __repr__(self) -> str:
        return f"Secret({_MASK!r})" if self._value else "Secret('')"

    __str__ = __repr__


class SecretUrl(Secret):
    """A URL or DSN that may hold a password: str, repr and `redacted` mask it."""

    __slots__ = ()

    @property
    def redacted(self) -> str:
        return redact_url(self._value)

    def __repr__(self) -> str:
        return f"SecretUrl({self.redacted!r})"

    def __str__(self) -> str:
        return self.redacted


def redact_url(url: str) -> str:
    """`scheme://user:pass@host/x` -> `scheme://user:***@host/x`; other strings unchanged."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return str(url)
    if parts.password is None:
        return str(url)
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{user}:{_MASK}@{host}"))


def check(fn: Check, **extra: Any) -> dict[str, Any]:
    """Field metadata attaching a validator: `field(default=1, metadata=check(positive))`."""
    return {"check": fn, **extra}


def rest_of_table(**extra: Any) -> dict[str, Any]:
    """Field metadata: this `Mapping[str, Section]` field takes every key of the
    table that is not another field (`[breakers.<name>]` beside `[breakers]`'s
    own keys). In output its entries sit in the table itself, as in the file."""
    return {"rest": True, **extra}


def positive(value: float) -> str | None:
    """Validator: a number > 0."""
    return None if value > 0 else f"expected a number > 0, got {value}"


def not_negative(value: float) -> str | None:
    """Validator: a number >= 0."""
    return None if value >= 0 else f"expected a number >= 0, got {value}"


def tcp_port(value: int) -> str | None:
    """Validator: a TCP port."""
    return None if 1 <= value <= 65535 else f"expected a port 1..65535, got {value}"


class Problems:
    """Collects "key.path: why" lines while a tree is converted."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def add(self, path: str, why: str) -> None:
        self.lines.append(f"{path}: {why}")


def _describe(value: Any) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    return repr(value)


def _type_name(tp: Any) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}
    if tp in names:
        return names[tp]
    if tp in (Secret, SecretUrl):
        return "a string"
    if get_origin(tp) is Literal:
        return " or ".join(f'"{a}"' for a in get_args(tp))
    return getattr(tp, "__name__", str(tp))


class _Unset:
    pass


_UNSET = _Unset()


def convert(tp: Any, value: Any, path: str, problems: Problems, text: Mapping[str, str]) -> Any:
    """Convert `value` to `tp`; on a problem record it and return `_UNSET`.

    `text` maps key paths set from environment variables to their raw text, so
    a string field gets `"007"` even though TOML parsing made it the number 7.
    """
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        return _convert_optional(tp, value, path, problems, text)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            problems.add(path, f"expected a table, got {_describe(value)}")
            return _UNSET
        return build(typing.cast(type[Any], tp), value, problems, path, text)
    if origin is Literal:
        if value not in get_args(tp):
            problems.add(path, f"expected {_type_name(tp)}, got {_describe(value)}")
            return _UNSET
        return value
    if origin is tuple:
        return _convert_tuple(tp, value, path, problems, text)
    if origin in (Mapping, dict, typing.Mapping):
        return _convert_mapping(tp, value, path, problems, text)
    return _convert_scalar(tp, value, path, problems, text)


def _convert_optional(
    tp: Any, value: Any, path: str, problems: Problems, text: Mapping[str, str]
) -> Any:
    inner = [a for a in get_args(tp) if a is not type(None)]
    if value is None or len(inner) != 1:
        return value
    return convert(inner[0], value, path, problems, text)


def _convert_tuple(
    tp: Any, value: Any, path: str, problems: Problems, text: Mapping[str, str]
) -> Any:
    if not isinstance(value, list | tuple):
        problems.add(path, f"expected an array, got {_describe(value)}")
        return _UNSET
    item_type = get_args(tp)[0]
    items = [convert(item_type, v, f"{path}[{i}]", problems, {}) for i, v in enumerate(value)]
    return _UNSET if any(i is _UNSET for i in items) else tuple(items)


def _convert_mapping(
    tp: Any, value: Any, path: str, problems: Problems, text: Mapping[str, str]
) -> Any:
    if not isinstance(value, dict):
        problems.add(path, f"expected a table, got {_describe(value)}")
        return _UNSET
    value_type = get_args(tp)[1]
    out = {k: convert(value_type, v, f"{path}.{k}", problems, text) for k, v in value.items()}
    return _UNSET if any(v is _UNSET for v in out.values()) else types.MappingProxyType(out)


def _convert_scalar(
    tp: Any, value: Any, path: str, problems: Problems, text: Mapping[str, str]
) -> Any:
    if tp in (str, Secret, SecretUrl) and path in text and not isinstance(value, str):
        value = text[path]
    ok = (
        (tp is bool and isinstance(value, bool))
        or (tp is int and isinstance(value, int) and not isinstance(value, bool))
        or (tp is float and isinstance(value, int | float) and not isinstance(value, bool))
        or (tp in (str, Secret, SecretUrl) and isinstance(value, str))
        or tp is Any
    )
    if not ok:
        problems.add(path, f"expected {_type_name(tp)}, got {_describe(value)}")
        return _UNSET
    if tp is float:
        return float(value)
    if tp is Secret:
        return Secret(value)
    if tp is SecretUrl:
        return SecretUrl(value)
    return value


def _rest_entry(key: str, value: Any, fields: Mapping[str, Any]) -> bool:
    return key not in fields and isinstance(value, dict)


def build(
    cls: type[T],
    raw: Mapping[str, Any],
    problems: Problems,
    path: str = "",
    text: Mapping[str, str] | None = None,
) -> T:
    """Build dataclass `cls` from `raw`; unknown keys, wrong types and bad values are problems.

    Always returns an instance (defaults stand in for bad fields) so that every
    problem in the whole tree is found in one pass; callers check `problems`.
    """
    text = text or {}
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    prefix = f"{path}." if path else ""
    rest = next((f.name for f in fields.values() if f.metadata.get("rest")), None)
    if rest is not None:
        # Tables that are not fields belong to the rest field, under the table's own path;
        # any other unknown key is reported as unknown below.
        raw = {
            **{k: v for k, v in raw.items() if k != rest and not _rest_entry(k, v, fields)},
            rest: {k: v for k, v in raw.items() if _rest_entry(k, v, fields)},
        }
    for key in raw:
        if key not in fields:
            known = ", ".join(sorted(f for f in fields if f != rest)) or "none"
            problems.add(f"{prefix}{key}", f"unknown key (known keys: {known})")
    values: dict[str, Any] = {}
    for name, field in fields.items():
        if name not in raw:
            continue
        key_path = path if name == rest else f"{prefix}{name}"
        value = convert(hints[name], raw[name], key_path, problems, text)
        if value is _UNSET:
            continue
        check_fn: Check | None = field.metadata.get("check")
        why = check_fn(value) if check_fn else None
        if why:
            problems.add(key_path, why)
            continue
        values[name] = value
    return cls(**values)


def to_plain(value: Any, *, redact: bool = True) -> Any:
    """A config tree as plain TOML-able data; secrets and URL passwords masked when `redact`."""
    if isinstance(value, SecretUrl):
        return value.redacted if redact else value.reveal()
    if isinstance(value, Secret):
        return (_MASK if value else "") if redact else value.reveal()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        plain: dict[str, Any] = {}
        for f in dataclasses.fields(value):
            item = getattr(value, f.name)
            if item is None:
                continue  # TOML has no null: a None field is one left unset
            if f.metadata.get("rest"):
                plain.update(to_plain(item, redact=redact))
            else:
                plain[f.name] = to_plain(item, redact=redact)
        return plain
    if isinstance(value, Mapping):
        return {k: to_plain(v, redact=redact) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [to_plain(v, redact=redact) for v in value]
    return value
