"""README examples that run as tests: the code between `<!-- name -->` markers."""

from __future__ import annotations

import re
from typing import Any

from tests.support.services import REPO


def run_example(marker: str) -> dict[str, Any]:
    """Execute the README's ```python block marked `marker`; the names it defines."""
    readme = (REPO / "README.md").read_text()
    block = re.search(rf"<!-- {marker} -->\n```python\n(.*?)```\n<!-- /{marker} -->", readme, re.S)
    assert block, f"README.md lost its example {marker}"
    namespace: dict[str, Any] = {"__name__": f"readme_{marker.replace('-', '_')}"}
    exec(compile(block.group(1), "README.md", "exec"), namespace)
    return namespace
