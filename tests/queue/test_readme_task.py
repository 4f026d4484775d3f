"""The README's task example is real: its plugin loads by import path and its task runs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient

from app.application import create_app
from tests.queue.conftest import submit, wait_for
from tests.support.apps import ConfigFactory
from tests.support.services import REPO


@pytest.fixture
def example_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    readme = (REPO / "README.md").read_text()
    block = re.search(
        r"<!-- task-example -->\n```python\n(.*?)```\n<!-- /task-example -->", readme, re.S
    )
    assert block, "README.md lost its task example"
    (tmp_path / "readme_greetings.py").write_text(block.group(1))
    monkeypatch.syspath_prepend(str(tmp_path))
    return "readme_greetings:GreetingsPlugin"


async def test_the_readme_task_runs_and_checks_its_args(
    aiohttp_client, make_config: ConfigFactory, example_module: str
) -> None:
    plugins = json.dumps(["sharding", "queue", example_module])
    client: TestClient = await aiohttp_client(create_app(make_config(PLUGINS__ENABLED=plugins)))
    job = await submit(client, "greetings.send", args={"name": "ada", "times": 2})
    done = await wait_for(client, job["id"], "succeeded")
    assert done["result"] == {"text": "hello ada hello ada", "attempt": 1}
    response = await client.post(
        "/api/jobs", json={"task": "greetings.send", "args": {"name": "ada", "times": 0}}
    )
    assert response.status == 422
    assert (await response.json())["error"]["details"][0]["field"] == "args.times"
