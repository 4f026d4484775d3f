"""The content-header frame Keel encodes itself is byte for byte pamqp's."""

from __future__ import annotations

import pamqp.frame
import pytest
from pamqp import commands as spec
from pamqp.header import ContentHeader

from app.queue.amqp_frames import content_header

CASES = [
    spec.Basic.Properties(
        delivery_mode=2, content_type="application/json", message_id="01M8NZ374J60FJG:1:7"
    ),
    spec.Basic.Properties(delivery_mode=1),
    spec.Basic.Properties(),
    spec.Basic.Properties(content_type="text/plain", message_id="é" * 100),
    # Through pamqp: any other property, headers (even empty) included.
    spec.Basic.Properties(delivery_mode=2, headers={}),
    spec.Basic.Properties(delivery_mode=2, headers={"x-retry": 2}),
    spec.Basic.Properties(delivery_mode=2, priority=3, timestamp=None),
]


@pytest.mark.parametrize("properties", CASES)
@pytest.mark.parametrize(("channel", "body_size"), [(1, 0), (7, 120), (65535, 2**40)])
def test_the_frame_is_pamqps(
    properties: spec.Basic.Properties, channel: int, body_size: int
) -> None:
    frame = content_header(channel, body_size, properties)
    assert frame == pamqp.frame.marshal(ContentHeader(0, body_size, properties), channel)
    _, number, header = pamqp.frame.unmarshal(frame)
    assert isinstance(header, ContentHeader)
    assert (number, header.body_size, header.properties) == (channel, body_size, properties)
