"""Where a message stands in its channel's history: its `offset` and `epoch`, in its frame.

With history on, a `message` op ends with `"offset":N,"epoch":"E"`. They are
written at the end of the bytes `protocol.message` serialized — once per
message, by whoever assigns the offset (the in-process history, or the Redis
script, which does the same concatenation in Lua) — so the frame is still
built once and shared by every subscriber, and nothing is decoded to stamp it.
Read back, they sit in the last few bytes: a message whose `data` happens to
hold such keys is never mistaken for a stamped one, since its own keys are
followed by the closing brace of `data` as well.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# An epoch as Keel makes them (hex tokens, a dot and digits); clients echo it back.
EPOCH_CHARS = r"[A-Za-z0-9._:-]"
_TAIL = re.compile(rb',"offset":(\d{1,20}),"epoch":"(' + EPOCH_CHARS.encode() + rb'{1,64})"\}\Z')
_TAIL_BYTES = 128  # the longest tail above, with room to spare


@dataclass(frozen=True, slots=True)
class Position:
    """The `offset`-th message of the channel's history called `epoch` (0: none yet)."""

    offset: int
    epoch: str


def stamp(body: bytes, offset: int, epoch: str) -> bytes:
    """`{"op":"message",…}` with `"offset"` and `"epoch"` added before the closing brace."""
    return b'%b,"offset":%d,"epoch":"%b"}' % (body[:-1], offset, epoch.encode())


def position_of(payload: bytes) -> Position | None:
    """The position stamped on a serialized message, or None (history off, or degraded)."""
    found = _TAIL.search(payload, max(0, len(payload) - _TAIL_BYTES))
    if found is None:
        return None
    return Position(int(found[1]), found[2].decode())
