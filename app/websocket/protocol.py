"""The `/ws` protocol: what a client may send, and what the server sends back.

Client to server, one JSON object per text frame::

    {"op": "subscribe",   "channel": C}
    {"op": "unsubscribe", "channel": C}
    {"op": "publish",     "channel": C, "data": <any JSON>}
    {"op": "ping"}

Any of them may carry `"ref"`: a string of at most 128 characters or an
integer, echoed in the reply so a client can match replies to requests.
Unknown keys are ignored (room for later additions).

Server to client::

    {"op": "message", "channel": C, "data": …}              a publication on C
    {"op": "ok", "ref": R}                                    R is null without a ref
    {"op": "error", "code": …, "message": …, ["ref": R]}      the op was refused
    {"op": "pong", ["ref": R]}                                 the answer to ping

Parsing is IO-free: `parse(text)` returns a command or raises `ProtocolError`
carrying the error to send (the connection stays open).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

import orjson

from app.websocket.channels import is_channel

Ref = str | int | None

MAX_REF_LENGTH = 128


@dataclass(frozen=True, slots=True)
class Subscribe:
    channel: str
    ref: Ref = None


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    channel: str
    ref: Ref = None


@dataclass(frozen=True, slots=True)
class Publish:
    channel: str
    data: Any
    ref: Ref = None


@dataclass(frozen=True, slots=True)
class Ping:
    ref: Ref = None


Command = Subscribe | Unsubscribe | Publish | Ping


class ProtocolError(Exception):
    """A frame or op the server refuses; `payload` is the `error` message to send."""

    def __init__(self, code: str, message: str, ref: Ref = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.ref = ref

    @property
    def payload(self) -> bytes:
        return error(self.code, self.message, self.ref)


def _ref(frame: dict[str, Any]) -> Ref:
    ref = frame.get("ref")
    if ref is None:
        return None
    if isinstance(ref, bool) or not isinstance(ref, str | int):
        raise ProtocolError("invalid", '"ref" must be a string or an integer')
    if isinstance(ref, str) and len(ref) > MAX_REF_LENGTH:
        raise ProtocolError("invalid", f'"ref" is longer than {MAX_REF_LENGTH} characters')
    return ref


def _channel(frame: dict[str, Any], ref: Ref) -> str:
    channel = frame.get("channel")
    if channel is None:
        raise ProtocolError("invalid", f'"{frame["op"]}" needs a "channel"', ref)
    if not is_channel(channel):
        raise ProtocolError("bad_channel", "a channel name is 1-100 characters of [a-z0-9._-]", ref)
    # Interned: the hub's entry and every subscriber's list share one string.
    return sys.intern(channel)


def parse(text: str | bytes) -> Command:
    """The command in one client text frame; `ProtocolError` says what is wrong with it."""
    try:
        frame = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise ProtocolError("bad_json", "a frame must be one JSON object") from None
    if not isinstance(frame, dict):
        raise ProtocolError("bad_json", "a frame must be one JSON object")
    ref = _ref(frame)
    op = frame.get("op")
    if op == "subscribe":
        return Subscribe(_channel(frame, ref), ref)
    if op == "unsubscribe":
        return Unsubscribe(_channel(frame, ref), ref)
    if op == "publish":
        channel = _channel(frame, ref)
        if "data" not in frame:
            raise ProtocolError("invalid", '"publish" needs "data"', ref)
        return Publish(channel, frame["data"], ref)
    if op == "ping":
        return Ping(ref)
    if op is None:
        raise ProtocolError("invalid", 'a frame needs an "op"', ref)
    raise ProtocolError(
        "unknown_op", '"op" must be one of subscribe, unsubscribe, publish, ping', ref
    )


# --- server to client ---------------------------------------------------------------

PONG = b'{"op":"pong"}'
OK = b'{"op":"ok","ref":null}'


def message(channel: str, data: Any) -> bytes:
    """A publication, serialized once for every subscriber; TypeError if `data` is not JSON."""
    return orjson.dumps({"op": "message", "channel": channel, "data": data})


def ok(ref: Ref = None) -> bytes:
    return OK if ref is None else orjson.dumps({"op": "ok", "ref": ref})


def pong(ref: Ref = None) -> bytes:
    return PONG if ref is None else orjson.dumps({"op": "pong", "ref": ref})


def error(code: str, message: str, ref: Ref = None) -> bytes:
    body: dict[str, Any] = {"op": "error", "code": code, "message": message}
    if ref is not None:
        body["ref"] = ref
    return orjson.dumps(body)
