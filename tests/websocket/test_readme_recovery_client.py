"""The README's recovering Python client is real: it rides out the shutdown of its instance."""

from __future__ import annotations

import asyncio

import pytest

from tests.support.polling import eventually
from tests.support.readme import run_example
from tests.websocket.conftest import WITH_REDIS, service_of


async def test_the_readme_client_recovers_on_the_other_instance(
    start_app, shared_redis: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    settings = {**shared_redis, "WEBSOCKET__HISTORY_SIZE": "100"}
    a, b = await start_app(WITH_REDIS, **settings), await start_app(WITH_REDIS, **settings)
    urls = [str(a.make_url("/ws")), str(b.make_url("/ws"))]
    running = asyncio.create_task(run_example("ws-recovery-client-example")["main"](urls))
    printed: list[str] = []

    def has_printed(line: str) -> bool:
        printed.extend(capsys.readouterr().out.splitlines())
        return line in printed

    await eventually(lambda: has_printed("chat.lobby 1 {'text': 'hi'}"), what="its own message")
    closing = asyncio.create_task(service_of(a).close_all())  # a shuts down: 1001
    await eventually(lambda: not service_of(a).hub.connections, what="the client to leave a")
    for n in range(3):  # while it is away
        await service_of(b).publish("chat.lobby", {"n": n})
    await closing
    await eventually(
        lambda: service_of(b).hub.subscribers("chat.lobby") == 1, what="the client on b"
    )
    await service_of(b).publish("chat.lobby", {"text": "bye"})
    await asyncio.wait_for(running, 5)
    has_printed("")
    assert printed == [
        "chat.lobby 1 {'text': 'hi'}",
        "chat.lobby 2 {'n': 0}",
        "chat.lobby 3 {'n': 1}",
        "chat.lobby 4 {'n': 2}",
    ]
