"""The README's Python client is real: it runs against the app until the server shuts down."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest

from tests.support.apps import StartApp
from tests.support.polling import eventually
from tests.support.services import REPO
from tests.websocket.conftest import service_of


def readme_client() -> dict[str, Any]:
    readme = (REPO / "README.md").read_text()
    block = re.search(
        r"<!-- ws-client-example -->\n```python\n(.*?)```\n<!-- /ws-client-example -->",
        readme,
        re.S,
    )
    assert block, "README.md lost its WebSocket client example"
    namespace: dict[str, Any] = {"__name__": "readme_ws_client"}
    exec(compile(block.group(1), "README.md", "exec"), namespace)
    return namespace


async def test_the_readme_client_subscribes_publishes_and_sees_the_shutdown(
    start_app: StartApp, capsys: pytest.CaptureFixture[str]
) -> None:
    client = await start_app()
    service = service_of(client)
    main = readme_client()["main"]
    running = asyncio.create_task(main(str(client.make_url("/ws"))))
    await eventually(lambda: service.hub.channels() == {"chat.lobby": 1}, what="a subscriber")
    await eventually(lambda: "chat.lobby" in capsys.readouterr().out, what="its own message")
    await service.close_all()
    await asyncio.wait_for(running, 5)
    assert capsys.readouterr().out == "closed: 1001\n"
