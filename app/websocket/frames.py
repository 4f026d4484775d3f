"""The bytes of server-to-client WebSocket frames (RFC 6455, section 5.2).

A server frame is not masked and Keel never compresses (see `connection.py`),
so a message's frame is the same bytes for every subscriber: it is built once
per message and written as is to every socket — no per-socket encoding,
header packing or coroutine, which is where a naive broadcast loop spends
its time.
"""

from __future__ import annotations

import struct

_FIN_TEXT = 0x81  # FIN bit + opcode 1 (text)
_FIN_CLOSE = 0x88  # FIN bit + opcode 8 (close)
_LEN16 = struct.Struct("!BBH").pack
_LEN64 = struct.Struct("!BBQ").pack


def text_frame(payload: bytes) -> bytes:
    """One complete, final, unmasked text frame carrying `payload` (valid UTF-8)."""
    size = len(payload)
    if size < 126:
        return bytes((_FIN_TEXT, size)) + payload
    if size < 65536:
        return _LEN16(_FIN_TEXT, 126, size) + payload
    return _LEN64(_FIN_TEXT, 127, size) + payload


def close_frame(code: int, reason: str = "") -> bytes:
    """A close frame (opcode 8) with `code` and a reason of at most 123 bytes."""
    payload = struct.pack("!H", code) + reason.encode()[:123]
    return bytes((_FIN_CLOSE, len(payload))) + payload
