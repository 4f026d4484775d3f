"""Every module of `app/` imports alone in a fresh interpreter, so no import cycle can hide.

A cycle hides when the modules of the cycle are always imported in one order
(a late import, a test that imports the package first): importing the other
module first fails. As aiohttp's `test_circular_imports` does, each module
here is imported on its own — in a child forked from an interpreter that has
loaded the third-party libraries and nothing of `app` — and every failure is
reported with its traceback.

And the layering: library code never imports a plugin module; only the
loader (`app.plugins`, imported by the composition root) and other plugins do.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from tests.support.services import REPO

APP = REPO / "app"

# Runs in a fresh interpreter: preload third-party code (speed), then one fork per module.
_IMPORT_EACH = """
import importlib, os, sys, traceback
for library in ("aiohttp", "aiohttp_jinja2", "aiohttp_cors", "redis.asyncio", "aiormq",
                "asyncpg", "prometheus_client", "orjson", "hiredis", "yarl"):
    importlib.import_module(library)
assert not [m for m in sys.modules if m == "app" or m.startswith("app.")]
failed = 0
for name in sys.argv[1:]:
    pid = os.fork()
    if pid == 0:
        try:
            importlib.import_module(name)
        except BaseException:
            print(f"--- {name}", flush=True)
            traceback.print_exc(file=sys.stdout)
            sys.stdout.flush()
            os._exit(1)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    failed += status != 0
sys.exit(1 if failed else 0)
"""


def module_names() -> list[str]:
    names = []
    for path in sorted(APP.rglob("*.py")):
        parts = path.relative_to(REPO).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def test_every_module_imports_alone() -> None:
    names = module_names()
    assert len(names) > 100  # the whole package, not a typo'd path
    result = subprocess.run(
        [sys.executable, "-c", _IMPORT_EACH, *names],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def imported_modules(path: Path) -> set[str]:
    """Every `app.…` module `path` imports, at any depth of the file (late imports too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name == "app" or name.startswith("app.")}


def test_only_the_loader_and_plugins_import_plugin_modules() -> None:
    plugin_modules = {f"app.plugins.{path.stem}" for path in (APP / "plugins").glob("*.py")} - {
        "app.plugins.__init__"
    }
    assert "app.plugins.redis" in plugin_modules
    offenders = []
    for path in sorted(APP.rglob("*.py")):
        if path.parent == APP / "plugins":
            continue  # a plugin may use another plugin's module; the loader imports them all
        imported = imported_modules(path) & plugin_modules
        if imported:
            offenders.append(f"{path.relative_to(REPO)} imports {sorted(imported)}")
    assert offenders == []
