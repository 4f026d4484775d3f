"""Client frames in, server messages and frames out (pure)."""

from __future__ import annotations

import struct

import orjson
import pytest

from app.websocket import protocol
from app.websocket.frames import text_frame
from app.websocket.protocol import Ping, ProtocolError, Publish, Subscribe, Unsubscribe


@pytest.mark.parametrize(
    ("frame", "command"),
    [
        ('{"op":"subscribe","channel":"a"}', Subscribe("a")),
        ('{"op":"subscribe","channel":"a","ref":7}', Subscribe("a", 7)),
        ('{"op":"unsubscribe","channel":"a","ref":"x"}', Unsubscribe("a", "x")),
        ('{"op":"publish","channel":"a","data":null}', Publish("a", None)),
        ('{"op":"publish","channel":"a","data":{"k":[1]}}', Publish("a", {"k": [1]})),
        ('{"op":"ping"}', Ping()),
        ('{"op":"ping","ref":"r","extra":true}', Ping("r")),  # unknown keys are ignored
    ],
)
def test_valid_frames(frame: str, command: protocol.Command) -> None:
    assert protocol.parse(frame) == command


@pytest.mark.parametrize(
    ("frame", "code", "ref"),
    [
        ("not json", "bad_json", None),
        ("[1, 2]", "bad_json", None),
        ('"subscribe"', "bad_json", None),
        ("{}", "invalid", None),
        ('{"op":"subscribe"}', "invalid", None),
        ('{"op":"subscribe","ref":3}', "invalid", 3),
        ('{"op":"publish","channel":"a"}', "invalid", None),
        ('{"op":"ping","ref":[1]}', "invalid", None),
        ('{"op":"ping","ref":true}', "invalid", None),
        ('{"op":"ping","ref":"' + "r" * 129 + '"}', "invalid", None),
        ('{"op":"dance","ref":"d"}', "unknown_op", "d"),
        ('{"op":"subscribe","channel":"Bad Name","ref":1}', "bad_channel", 1),
        ('{"op":"subscribe","channel":""}', "bad_channel", None),
        ('{"op":"subscribe","channel":5}', "bad_channel", None),
    ],
)
def test_malformed_frames_name_the_problem(frame: str, code: str, ref: object) -> None:
    with pytest.raises(ProtocolError) as caught:
        protocol.parse(frame)
    error = orjson.loads(caught.value.payload)
    assert error["op"] == "error"
    assert error["code"] == code
    assert error["message"]
    assert error.get("ref") == ref


def test_replies() -> None:
    assert orjson.loads(protocol.ok()) == {"op": "ok", "ref": None}
    assert orjson.loads(protocol.ok("a")) == {"op": "ok", "ref": "a"}
    assert orjson.loads(protocol.pong()) == {"op": "pong"}
    assert orjson.loads(protocol.pong(2)) == {"op": "pong", "ref": 2}
    assert orjson.loads(protocol.message("c", {"x": 1})) == {
        "op": "message",
        "channel": "c",
        "data": {"x": 1},
    }


def test_data_that_is_not_json_is_refused() -> None:
    with pytest.raises(TypeError):
        protocol.message("c", object())


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536, 70000])
def test_text_frames_follow_rfc_6455(size: int) -> None:
    payload = b"x" * size
    frame = text_frame(payload)
    assert frame[0] == 0x81  # FIN, text
    if size < 126:
        assert frame[1] == size
        header = 2
    elif size < 65536:
        assert frame[1] == 126
        assert struct.unpack("!H", frame[2:4])[0] == size
        header = 4
    else:
        assert frame[1] == 127
        assert struct.unpack("!Q", frame[2:10])[0] == size
        header = 10
    assert frame[header:] == payload
