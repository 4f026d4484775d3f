"""A job message's content-header frame, encoded directly.

pamqp encodes a content header through its generic property machinery:
8 µs a message for Keel's three properties (11.6 with the empty headers
table Keel used to send), measured alone; a few percent of a job's CPU on
RabbitMQ. A job message carries at most
`content_type`, `delivery_mode` and `message_id` (and headers on a retry);
those without headers are encoded here in a few struct packs. Anything else
goes through pamqp, so the bytes are pamqp's either way (a test holds the two
to each other).
"""

from __future__ import annotations

import struct

import pamqp.frame
from pamqp import commands as spec
from pamqp.header import ContentHeader

_HEADER_FRAME = 2
_FRAME_END = b"\xce"
_BASIC_CLASS = 60
# Property flags (AMQP 0-9-1 basic class): the bit of each property a message may set.
_CONTENT_TYPE = 1 << 15
_DELIVERY_MODE = 1 << 12
_MESSAGE_ID = 1 << 7
# The other properties: any of them set sends the message through pamqp.
_OTHERS = (
    "content_encoding",
    "headers",
    "priority",
    "correlation_id",
    "reply_to",
    "expiration",
    "timestamp",
    "message_type",
    "user_id",
    "app_id",
    "cluster_id",
)


def _short_string(value: str) -> bytes:
    encoded = value.encode()  # at most 255 bytes: `Properties` checks on creation
    return bytes((len(encoded),)) + encoded


def content_header(channel: int, body_size: int, properties: spec.Basic.Properties) -> bytes:
    """The content-header frame for a message of `body_size` bytes on `channel`."""
    if any(getattr(properties, name) is not None for name in _OTHERS):
        return pamqp.frame.marshal(ContentHeader(0, body_size, properties), channel)
    flags = 0
    parts = []
    if properties.content_type is not None:
        flags |= _CONTENT_TYPE
        parts.append(_short_string(properties.content_type))
    if properties.delivery_mode is not None:
        flags |= _DELIVERY_MODE
        parts.append(bytes((properties.delivery_mode,)))
    if properties.message_id is not None:
        flags |= _MESSAGE_ID
        parts.append(_short_string(properties.message_id))
    payload = struct.pack(">HHQH", _BASIC_CLASS, 0, body_size, flags) + b"".join(parts)
    return struct.pack(">BHI", _HEADER_FRAME, channel, len(payload)) + payload + _FRAME_END
