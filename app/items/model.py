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
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from app.core.json_codec import loads
from app.core.schema import AnyValue, List, Number, Problem, Record, Schema, Text

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

MAX_NAME = 200
MAX_TAGS = 50
MAX_TAG = 100
# Fields a client may send back from a GET; the server owns them, so they are ignored.
READ_ONLY = frozenset({"id", "version", "created_at", "updated_at"})


# Two characters (10 bits) at a time: 13 lookups for an id's 26 characters, not 26
# (an id is made for every job and item; 1.1 µs against 5).
_PAIRS = tuple(first + second for first in _CROCKFORD for second in _CROCKFORD)
_PAIR_SHIFTS = tuple(range(120, -1, -10))


def _encode(value: int) -> str:
    """The low 130 bits of `value` as 26 Crockford base32 characters, most significant first."""
    return "".join([_PAIRS[(value >> shift) & 1023] for shift in _PAIR_SHIFTS])


def new_id(now_ms: int | None = None, entropy: bytes | None = None) -> str:
    """A time-ordered id: ids made in a later millisecond sort after earlier ones."""
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    return _encode((ms << 80) | int.from_bytes(entropy or os.urandom(10), "big"))


_IDS_PER_FETCH = 256


class IdGenerator:
    """Ids that sort in the order this process made them, also within one millisecond.

    Within a millisecond (or if the clock steps back) the next id is the last
    one plus one, as monotonic ULIDs do; a new millisecond starts from fresh
    random bits. Across instances ids still sort by their millisecond.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._last = 0
        self._entropy = b""
        self._taken = 0

    def _random_bits(self) -> int:
        """80 bits from the OS's generator, fetched for many ids at once: `os.urandom`
        gives up the GIL, and with a shard's thread waiting for it the event loop then
        waits its turn to get it back (7% of the loop's time per job, under py-spy)."""
        if self._taken >= len(self._entropy):
            self._entropy, self._taken = os.urandom(10 * _IDS_PER_FETCH), 0
        start = self._taken
        self._taken += 10
        return int.from_bytes(self._entropy[start : start + 10], "big")

    def __call__(self) -> str:
        ms = int(self._clock() * 1000)
        fresh = (ms << 80) | self._random_bits()
        self._last = fresh if fresh >> 80 > self._last >> 80 else self._last + 1
        return _encode(self._last)


class UtcStamps:
    """UTC now as `2026-01-31T12:00:00.123Z`, the date and time formatted once a second.

    Every record change takes one, and `strftime` was most of its cost. The
    milliseconds and the second come from one reading, so a stamp never shows
    the previous second with the next one's milliseconds.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._second = -1
        self._prefix = ""

    def __call__(self) -> str:
        ms = int(self._clock() * 1000)
        second, fraction = divmod(ms, 1000)
        if second != self._second:
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = second
        return f"{self._prefix}.{fraction:03d}Z"


now_iso = UtcStamps()


@dataclass(frozen=True)
class ItemInput:
    """A validated create/replace body."""

    name: str
    price: float
    tags: tuple[str, ...]


class ValidationFailed(Exception):
    """The body is not a valid item; `problems` lists `{"field", "message"}` entries."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(f"{p['field']}: {p['message']}" for p in problems))
        self.problems = problems


WRITABLE: dict[str, Schema] = {
    "name": Text(1, MAX_NAME),
    "price": Number(minimum=0),
    "tags": List(Text(1, MAX_TAG), max_items=MAX_TAGS),
}
_IGNORED = AnyValue("Read-only: sent back from a GET, ignored")
# What PUT accepts: an `id` too, but only the URL's (checked by the handler).
ITEM_REPLACEMENT = Record(
    {**WRITABLE, **{name: _IGNORED for name in sorted(READ_ONLY - {"id"})}},
    required=("name", "price"),
)
# What POST accepts: the server chooses the id, so any `id` sent is ignored.
ITEM_INPUT = Record({**ITEM_REPLACEMENT.fields, "id": _IGNORED}, required=("name", "price"))


# What every response carries (`item_from_row`): the same fields, and the server's.
ITEM = Record(
    {
        "id": Text(1, 128),
        **WRITABLE,
        "version": Number(minimum=1, integer=True),
        "created_at": Text(format="date-time"),
        "updated_at": Text(format="date-time"),
    },
    required=("id", "name", "price", "tags", "version", "created_at", "updated_at"),
)


def validate(body: Any, schema: Record = ITEM_INPUT) -> ItemInput:
    """Check every field and report every problem at once (`ValidationFailed`)."""
    problems = schema.problems(body)
    if problems:
        raise ValidationFailed(problems)
    return ItemInput(
        name=body["name"], price=float(body["price"]), tags=tuple(body.get("tags", ()))
    )


def item_from_row(row: dict[str, Any]) -> dict[str, Any]:
    """The JSON shape of a stored row (selected as `id, name, price, tags, version,
    created_at, updated_at`), made in place: the row is the caller's own, and a list
    page converts dozens of them."""
    row["price"] = float(row["price"])  # SQLite RETURNING gives 999 for a stored 999.0
    row["tags"] = loads(row["tags"])
    return row


def item_cache_key(item_id: str) -> str:
    """The cache entry of one item (read by its GET, dropped by every write)."""
    return f"item:{item_id}"


def etag(version: int) -> str:
    return f'"{version}"'


# RFC 9110 `If-Match` / `If-None-Match`: `*`, or a list of entity tags, weak or strong.
ETAG_LIST_PATTERN = r' *(\*|(W/)?"[!#-~]*"( *, *(W/)?"[!#-~]*")*) *'
_ETAG_LIST = re.compile(ETAG_LIST_PATTERN)


def is_etag_list(header: str) -> bool:
    """Is `header` `*` or a list of entity tags (what `etag_matches` understands)?"""
    return _ETAG_LIST.fullmatch(header) is not None


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
