"""Recovery's pure parts: `since` and `presence` frames, stamping, and judging a replay."""

from __future__ import annotations

import orjson
import pytest

from app.websocket import protocol
from app.websocket.channels import ChannelPatterns
from app.websocket.history import judge
from app.websocket.position import Position, position_of, stamp
from app.websocket.protocol import Presence, ProtocolError, Subscribe


@pytest.mark.parametrize(
    ("frame", "command"),
    [
        (
            '{"op":"subscribe","channel":"a","since":{"offset":0,"epoch":"e1"}}',
            Subscribe("a", None, Position(0, "e1")),
        ),
        (
            '{"op":"subscribe","channel":"a","ref":2,"since":{"offset":41,"epoch":"x.1"}}',
            Subscribe("a", 2, Position(41, "x.1")),
        ),
        ('{"op":"subscribe","channel":"a","since":null}', Subscribe("a")),
        ('{"op":"presence","channel":"a","ref":"p"}', Presence("a", "p")),
    ],
)
def test_since_and_presence_frames(frame: str, command: protocol.Command) -> None:
    assert protocol.parse(frame) == command


@pytest.mark.parametrize(
    ("since", "field"),
    [
        ("5", '"since"'),
        ("[5]", '"since"'),
        ('{"epoch":"e"}', '"since.offset"'),
        ('{"offset":-1,"epoch":"e"}', '"since.offset"'),
        ('{"offset":1.5,"epoch":"e"}', '"since.offset"'),
        ('{"offset":"3","epoch":"e"}', '"since.offset"'),
        ('{"offset":true,"epoch":"e"}', '"since.offset"'),
        ('{"offset":3}', '"since.epoch"'),
        ('{"offset":3,"epoch":7}', '"since.epoch"'),
        ('{"offset":3,"epoch":""}', '"since.epoch"'),
        ('{"offset":3,"epoch":"' + "e" * 65 + '"}', '"since.epoch"'),
    ],
)
def test_a_bad_since_is_refused_naming_the_field(since: str, field: str) -> None:
    frame = '{"op":"subscribe","channel":"a","ref":9,"since":' + since + "}"
    with pytest.raises(ProtocolError) as caught:
        protocol.parse(frame)
    error = orjson.loads(caught.value.payload)
    assert (error["code"], error["ref"]) == ("invalid", 9)
    assert error["message"].startswith(field), error["message"]


def test_presence_needs_a_valid_channel() -> None:
    with pytest.raises(ProtocolError) as caught:
        protocol.parse('{"op":"presence"}')
    assert caught.value.code == "invalid"
    with pytest.raises(ProtocolError) as caught:
        protocol.parse('{"op":"presence","channel":"No"}')
    assert caught.value.code == "bad_channel"


def test_replies_with_a_position() -> None:
    at = Position(7, "e.1")
    assert orjson.loads(protocol.subscribed(1, at, None)) == {
        "op": "ok",
        "ref": 1,
        "offset": 7,
        "epoch": "e.1",
    }
    assert orjson.loads(protocol.subscribed(None, at, True)) == {
        "op": "ok",
        "ref": None,
        "recovered": True,
        "offset": 7,
        "epoch": "e.1",
    }
    assert orjson.loads(protocol.subscribed("r", None, False)) == {
        "op": "ok",
        "ref": "r",
        "recovered": False,
    }
    assert orjson.loads(protocol.presence("c", None, 3)) == {
        "op": "presence",
        "channel": "c",
        "ref": None,
        "subscribers": 3,
    }


def test_a_stamped_message_is_json_with_its_position_and_reads_back() -> None:
    body = protocol.message("chat.x", {"text": "hi"})
    stamped = stamp(body, 42, "abc.123")
    assert orjson.loads(stamped) == {
        "op": "message",
        "channel": "chat.x",
        "data": {"text": "hi"},
        "offset": 42,
        "epoch": "abc.123",
    }
    assert position_of(stamped) == Position(42, "abc.123")
    assert position_of(body) is None


@pytest.mark.parametrize(
    "data",
    [
        {"offset": 5, "epoch": "e"},
        [",", {"offset": 5, "epoch": "e"}],
        ',"offset":5,"epoch":"e"}',
        {"nested": {"x": 1, "offset": 5, "epoch": "e"}},
    ],
)
def test_data_that_looks_like_a_position_is_not_one(data: object) -> None:
    body = protocol.message("c", data)
    assert position_of(body) is None
    assert position_of(stamp(body, 9, "real")) == Position(9, "real")


def test_a_large_message_keeps_its_position_at_the_end() -> None:
    body = protocol.message("c", "x" * 100_000)
    assert position_of(stamp(body, 123456789, "e")) == Position(123456789, "e")


@pytest.mark.parametrize(
    ("since", "latest", "first", "recovered"),
    [
        (None, Position(5, "e"), 1, None),
        (Position(5, "e"), Position(5, "e"), None, True),  # nothing missed, nothing kept
        (Position(3, "e"), Position(5, "e"), 4, True),
        (Position(3, "e"), Position(5, "e"), 1, True),
        (Position(0, "e"), Position(5, "e"), 1, True),
        (Position(3, "e"), Position(5, "e"), 5, False),  # 4 was trimmed
        (Position(3, "e"), Position(5, "e"), None, False),  # the messages expired
        (Position(3, "old"), Position(5, "e"), 1, False),  # another epoch
        (Position(6, "e"), Position(5, "e"), 1, False),  # beyond the latest
    ],
)
def test_judging_a_replay(
    since: Position | None, latest: Position, first: int | None, recovered: bool | None
) -> None:
    assert judge(since, latest, first) is recovered


def test_channel_patterns_match_what_they_list() -> None:
    private = ChannelPatterns(["admin.*"])
    assert private.matches("admin.audit")
    assert not private.matches("items")
    private.add("ops")
    assert private.matches("ops")
    private.configure([])
    assert not private.matches("admin.audit")
    assert private.matches("ops")  # added by a plugin: kept
    with pytest.raises(ValueError, match="expected a channel name"):
        private.add("Bad!")
