"""Items: what a client may send, what is stored, ids and list cursors. Pure code.

An item is `{"id", "name", "price", "tags", "version", "created_at", "updated_at"}`.
Server ids are time-ordered and URL-safe (26 chars of Crockford base32: 48 bits
of milliseconds, then 80 random bits); a client may choose an id on PUT (1..128
characters of `[A-Za-z0-9._:-]`, checked by `app.api.path_id`). Lists are ordered by id, bytewise.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from app.core.json_codec import loads

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

MAX_NAME = 200
MAX_TAGS = 50
MAX_TAG = 100
# Fields a client may send back from a GET; the server owns them, so they are ignored.
READ_ONLY = frozenset({"id", "version", "created_at", "updated_at"})
WRITABLE = frozenset({"name", "price", "tags"})


def _encode(value: int) -> str:
    return "".join(_CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))


def new_id(now_ms: int | None = None, entropy: bytes | None = None) -> str:
    """A time-ordered id: ids made in a later millisecond sort after earlier ones."""
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    return _encode((ms << 80) | int.from_bytes(entropy or os.urandom(10), "big"))


class IdGenerator:
    """Ids that sort in the order this process made them, also within one millisecond.

    Within a millisecond (or if the clock steps back) the next id is the last
    one plus one, as monotonic ULIDs do; a new millisecond starts from fresh
    random bits. Across instances ids still sort by their millisecond.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._last = 0

    def __call__(self) -> str:
        ms = int(self._clock() * 1000)
        fresh = (ms << 80) | int.from_bytes(os.urandom(10), "big")
        self._last = fresh if fresh >> 80 > self._last >> 80 else self._last + 1
        return _encode(self._last)


def now_iso() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}Z"


@dataclass(frozen=True)
class ItemInput:
    """A validated create/replace body."""

    name: str
    price: float
    tags: tuple[str, ...]


class ValidationFailed(Exception):
    """The body is not a valid item; `problems` lists `{"field", "message"}` entries."""

    def __init__(self, problems: list[dict[str, str]]) -> None:
        super().__init__("; ".join(f"{p['field']}: {p['message']}" for p in problems))
        self.problems = problems


def validate(body: Any) -> ItemInput:
    """Check every field and report every problem at once."""
    if not isinstance(body, dict):
        raise ValidationFailed([{"field": "(body)", "message": "expected a JSON object"}])
    problems: list[dict[str, str]] = []

    def problem(field: str, message: str) -> None:
        problems.append({"field": field, "message": message})

    for key in sorted(set(body) - WRITABLE - READ_ONLY):
        problem(key, "unknown field")
    name = body.get("name")
    if "name" not in body:
        problem("name", "required")
    elif not isinstance(name, str):
        problem("name", "expected a string")
    elif not 1 <= len(name) <= MAX_NAME:
        problem("name", f"expected 1..{MAX_NAME} characters, got {len(name)}")
    elif "\x00" in name:
        problem("name", "must not contain NUL characters")
    price = body.get("price")
    if "price" not in body:
        problem("price", "required")
    elif isinstance(price, bool) or not isinstance(price, int | float):
        problem("price", "expected a number")
    elif not math.isfinite(price) or price < 0:
        problem("price", "expected a finite number >= 0")
    tags = body.get("tags", [])
    if not isinstance(tags, list):
        problem("tags", "expected an array of strings")
        tags = []
    elif len(tags) > MAX_TAGS:
        problem("tags", f"expected at most {MAX_TAGS} tags, got {len(tags)}")
    for index, tag in enumerate(tags):
        if not isinstance(tag, str) or not 1 <= len(tag) <= MAX_TAG or "\x00" in tag:
            problem(f"tags[{index}]", f"expected a string of 1..{MAX_TAG} characters, no NUL")
    if problems:
        raise ValidationFailed(problems)
    assert isinstance(name, str)
    assert isinstance(price, int | float)
    return ItemInput(name=name, price=float(price), tags=tuple(tags))


def item_from_row(row: dict[str, Any]) -> dict[str, Any]:
    """The JSON shape of a stored row."""
    return {
        "id": row["id"],
        "name": row["name"],
        "price": float(row["price"]),  # SQLite RETURNING gives 999 for a stored 999.0
        "tags": loads(row["tags"]),
        "version": row["version"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
    }


def item_cache_key(item_id: str) -> str:
    """The cache entry of one item (read by its GET, dropped by every write)."""
    return f"item:{item_id}"


def etag(version: int) -> str:
    return f'"{version}"'


def etag_matches(header: str, version: int) -> bool:
    """`If-Match` / `If-None-Match`: `*` or a list of (weak or strong) tags."""
    if header.strip() == "*":
        return True
    wanted = etag(version)
    return any(tag.strip().removeprefix("W/") == wanted for tag in header.split(","))


# Cursors: opaque to clients, checked so that a mangled one is refused (400),
# never turned into a query. A checksum, not a signature: a cursor holds only
# the last id of a page, nothing a client could not ask for anyway.
_CURSOR_VERSION = 1


def encode_cursor(after: str) -> str:
    payload = json.dumps({"v": _CURSOR_VERSION, "after": after}, separators=(",", ":")).encode()
    digest = hashlib.blake2b(payload, digest_size=6).digest()
    return base64.urlsafe_b64encode(digest + payload).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    """The id the cursor continues after; ValueError if it is not one of ours."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    except (binascii.Error, ValueError):
        raise ValueError("not a cursor") from None
    digest, payload = raw[:6], raw[6:]
    if len(raw) < 7 or hashlib.blake2b(payload, digest_size=6).digest() != digest:
        raise ValueError("cursor is damaged")
    try:
        data = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ValueError("cursor is damaged") from None
    if not isinstance(data, dict) or data.get("v") != _CURSOR_VERSION:
        raise ValueError("cursor is from another version")
    after = data.get("after")
    if not isinstance(after, str):
        raise ValueError("cursor is from another version")
    return after


@dataclass(frozen=True)
class ItemEvent:
    """Published after an item change is committed."""

    event: Literal["created", "updated", "deleted"]
    id: str
    item: dict[str, Any] | None = None  # None for "deleted"
