"""The `/ws` protocol: what a client may send, and what the server sends back.

Client to server, one JSON object per text frame::

    {"op": "subscribe",   "channel": C, ["since": {"offset": N, "epoch": E}]}
    {"op": "unsubscribe", "channel": C}
    {"op": "publish",     "channel": C, "data": <any JSON>}
    {"op": "presence",    "channel": C}
    {"op": "ping"}

Any of them may carry `"ref"`: a string of at most 128 characters or an
integer, echoed in the reply so a client can match replies to requests.
Unknown keys are ignored (room for later additions).

Server to client::

    {"op": "message", "channel": C, "data": …, ["offset": N, "epoch": E]}
                                                              a publication on C
    {"op": "ok", "ref": R}                                    R is null without a ref
    {"op": "ok", "ref": R, ["recovered": b], "offset": N, "epoch": E}
                                                              a subscribe, history on
    {"op": "presence", "channel": C, "ref": R, "subscribers": n}
    {"op": "error", "code": …, "message": …, ["ref": R]}      the op was refused
    {"op": "pong", ["ref": R]}                                 the answer to ping

`offset` and `epoch` are there when `[websocket] history_size` > 0 (see
`history.py`); `recovered` answers a subscribe that carried `since`.

Parsing is IO-free: `parse(text)` returns a command or raises `ProtocolError`
carrying the error to send (the connection stays open).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

import orjson

from app.websocket.channels import is_channel
from app.websocket.position import Position

Ref = str | int | None

MAX_REF_LENGTH = 128
MAX_EPOCH_LENGTH = 64
SINCE_SHAPE = '{"offset": <integer >= 0>, "epoch": <string>}'


@dataclass(frozen=True, slots=True)
class Subscribe:
    channel: str
    ref: Ref = None
    since: Position | None = None


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
class Presence:
    channel: str
    ref: Ref = None


@dataclass(frozen=True, slots=True)
class Ping:
    ref: Ref = None


Command = Subscribe | Unsubscribe | Publish | Presence | Ping


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


def _since(frame: dict[str, Any], ref: Ref) -> Position | None:
    since = frame.get("since")
    if since is None:
        return None
    if not isinstance(since, dict):
        raise ProtocolError("invalid", f'"since" must be {SINCE_SHAPE}', ref)
    offset, epoch = since.get("offset"), since.get("epoch")
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise ProtocolError("invalid", '"since.offset" must be an integer >= 0', ref)
    if not isinstance(epoch, str) or not 0 < len(epoch) <= MAX_EPOCH_LENGTH:
        raise ProtocolError(
            "invalid", f'"since.epoch" must be a string of 1-{MAX_EPOCH_LENGTH} characters', ref
        )
    return Position(offset, epoch)


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
        return Subscribe(_channel(frame, ref), ref, _since(frame, ref))
    if op == "unsubscribe":
        return Unsubscribe(_channel(frame, ref), ref)
    if op == "publish":
        channel = _channel(frame, ref)
        if "data" not in frame:
            raise ProtocolError("invalid", '"publish" needs "data"', ref)
        return Publish(channel, frame["data"], ref)
    if op == "presence":
        return Presence(_channel(frame, ref), ref)
    if op == "ping":
        return Ping(ref)
    if op is None:
        raise ProtocolError("invalid", 'a frame needs an "op"', ref)
    raise ProtocolError(
        "unknown_op",
        '"op" must be one of subscribe, unsubscribe, publish, presence, ping',
        ref,
    )


# --- server to client ---------------------------------------------------------------

PONG = b'{"op":"pong"}'
OK = b'{"op":"ok","ref":null}'


def message(channel: str, data: Any) -> bytes:
    """A publication, serialized once for every subscriber; TypeError if `data` is not JSON."""
    return orjson.dumps({"op": "message", "channel": channel, "data": data})


def ok(ref: Ref = None) -> bytes:
    return OK if ref is None else orjson.dumps({"op": "ok", "ref": ref})


def subscribed(ref: Ref, latest: Position | None, recovered: bool | None) -> bytes:
    """The `ok` to a subscribe with history on: where the channel stands (when known) and,
    for a subscribe with `since`, whether everything after it was sent."""
    body: dict[str, Any] = {"op": "ok", "ref": ref}
    if recovered is not None:
        body["recovered"] = recovered
    if latest is not None:
        body["offset"] = latest.offset
        body["epoch"] = latest.epoch
    return orjson.dumps(body)


def presence(channel: str, ref: Ref, subscribers: int) -> bytes:
    return orjson.dumps(
        {"op": "presence", "channel": channel, "ref": ref, "subscribers": subscribers}
    )


def pong(ref: Ref = None) -> bytes:
    return PONG if ref is None else orjson.dumps({"op": "pong", "ref": ref})


def error(code: str, message: str, ref: Ref = None) -> bytes:
    body: dict[str, Any] = {"op": "error", "code": code, "message": message}
    if ref is not None:
        body["ref"] = ref
    return orjson.dumps(body)
