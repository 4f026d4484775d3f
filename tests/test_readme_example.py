"""The README's plugin example is real: it is loaded by import path and served."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient

from app.application import create_app
from app.errors import PluginError
from app.plugins import PLUGINS
from tests.support.apps import ConfigFactory
from tests.support.services import REPO


@pytest.fixture
def example_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    readme = (REPO / "README.md").read_text()
    block = re.search(
        r"<!-- plugin-example -->\n```python\n(.*?)```\n<!-- /plugin-example -->", readme, re.S
    )
    assert block, "README.md lost its plugin example"
    code = block.group(1)
    assert len(code.strip().splitlines()) <= 35
    (tmp_path / "readme_hello.py").write_text(code)
    monkeypatch.syspath_prepend(str(tmp_path))
    return "readme_hello:HelloPlugin"


async def test_the_readme_plugin_serves_counts_and_reports_state(
    aiohttp_client, make_config: ConfigFactory, example_module: str
) -> None:
    config = make_config(PLUGINS__ENABLED=f'["metrics", "{example_module}"]')
    client: TestClient = await aiohttp_client(create_app(config))
    response = await client.get("/hello/ada")
    assert response.status == 200
    assert await response.json() == {"hello": "ada"}
    metrics = await (await client.get("/metrics")).text()
    assert "keel_hello_greetings_total 1.0" in metrics
    (plugin,) = [p for p in client.app[PLUGINS] if p.name == "hello"]
    assert plugin.state() == {"open": True}


def test_the_readme_plugin_refuses_to_load_without_metrics(
    make_config: ConfigFactory, example_module: str
) -> None:
    with pytest.raises(PluginError, match='"hello" requires "metrics"'):
        create_app(make_config(PLUGINS__ENABLED=f'["{example_module}"]'))
