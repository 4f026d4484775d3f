"""Plugin lifetimes through the real runner: order, reverse teardown, failures."""

from __future__ import annotations

import pytest
from aiohttp import web

from app.application import create_app
from app.core.lifecycle import LIFECYCLE, Phase
from app.errors import TeardownError
from tests.support.apps import ConfigFactory
from tests.support.plugins.recording import EVENTS

R = "tests.support.plugins.recording"


def enabled(*classes: str) -> str:
    return "[" + ", ".join(f'"{R}:{c}"' for c in classes) + "]"


async def test_startup_in_dependency_order_teardown_in_reverse(
    make_config: ConfigFactory,
) -> None:
    app = create_app(
        make_config(PLUGINS__ENABLED=enabled("NeedsBoth", "UsesBase", "NeedsBase", "Base"))
    )
    runner = web.AppRunner(app)
    await runner.setup()
    assert app[LIFECYCLE].phase is Phase.RUNNING
    await runner.cleanup()
    assert app[LIFECYCLE].phase is Phase.STOPPED
    assert app[EVENTS] == [
        "setup base",
        "setup needs_base",
        "setup needs_both",
        "setup uses_base",
        "start base",
        "start needs_base",
        "start needs_both",
        "start uses_base",
        "stop uses_base",
        "stop needs_both",
        "stop needs_base",
        "stop base",
    ]


async def test_a_failure_during_startup_tears_down_what_had_started(
    make_config: ConfigFactory,
) -> None:
    app = create_app(make_config(PLUGINS__ENABLED=enabled("Base", "FailsStartup", "UsesBase")))
    runner = web.AppRunner(app)
    with pytest.raises(RuntimeError, match="cannot start"):
        await runner.setup()
    await runner.cleanup()
    assert app[EVENTS][-3:] == ["start base", "start fails_startup", "stop base"]
    assert "start uses_base" not in app[EVENTS]
    assert app[LIFECYCLE].phase is Phase.STARTING  # never reported ready


async def test_teardown_errors_are_all_collected_and_the_rest_still_runs(
    make_config: ConfigFactory,
) -> None:
    plugins = enabled("Base", "FailsTeardownOne", "UsesBase", "FailsTeardownTwo")
    app = create_app(make_config(PLUGINS__ENABLED=plugins))
    runner = web.AppRunner(app)
    await runner.setup()
    with pytest.raises(web.CleanupError) as caught:
        await runner.cleanup()
    errors = caught.value.exceptions
    assert [type(e) for e in errors] == [TeardownError, TeardownError]
    assert "plugin fails_teardown_two" in str(errors[0])
    assert "teardown two broke" in str(errors[0])
    assert "plugin fails_teardown_one" in str(errors[1])
    stops = [e for e in app[EVENTS] if e.startswith("stop")]
    assert stops == [
        "stop fails_teardown_two",
        "stop uses_base",
        "stop fails_teardown_one",
        "stop base",
    ]
