"""An outage is logged once when it starts and once when it ends, with since and reason."""

from __future__ import annotations

import logging

import pytest

from app.core.outage import Outage
from tests.support.clock import Clock

log = logging.getLogger("tests.outage")


def test_one_line_each_way_and_the_latest_reason(
    caplog: pytest.LogCaptureFixture, clock: Clock
) -> None:
    outage = Outage("widgets: redis", log, clock=clock)
    assert not outage.active
    assert outage.recovered() is False  # nothing to recover from: no line
    with caplog.at_level(logging.INFO, logger="tests.outage"):
        assert outage.failed(ConnectionError("refused"), "serving from memory") is True
        clock.now += 2
        assert outage.failed(TimeoutError(), "serving from memory") is False
        assert (outage.active, outage.since, outage.reason) == (True, 1000.0, "TimeoutError")
        clock.now += 1.5
        assert outage.recovered("shared again") is True
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.WARNING, "widgets: redis unavailable (refused); serving from memory"),
        (logging.INFO, "widgets: redis answers again after 3.5s; shared again"),
    ]
    assert (outage.active, outage.since, outage.reason) == (False, None, "")
