"""The README's Python client is real: it runs against the app until the server shuts down."""

from __future__ import annotations

import asyncio

import pytest

from tests.support.apps import StartApp
from tests.support.polling import eventually
from tests.support.readme import run_example
from tests.websocket.conftest import service_of


async def test_the_readme_client_subscribes_publishes_and_sees_the_shutdown(
    start_app: StartApp, capsys: pytest.CaptureFixture[str]
) -> None:
    client = await start_app()
    service = service_of(client)
    main = run_example("ws-client-example")["main"]
    running = asyncio.create_task(main(str(client.make_url("/ws"))))
    await eventually(lambda: service.hub.channels() == {"chat.lobby": 1}, what="a subscriber")
    await eventually(lambda: "chat.lobby" in capsys.readouterr().out, what="its own message")
    await service.close_all()
    await asyncio.wait_for(running, 5)
    assert capsys.readouterr().out == "closed: 1001\n"
