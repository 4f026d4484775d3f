"""schemathesis against a real Keel: the OpenAPI document matches what the server does.

`run.py` serves every default plugin (SQLite shards, the embedded queue) and
one upstream, an aiohttp server of the test's own; schemathesis runs every
check (`--checks all`) on every operation, with a fixed seed, through all its
phases — the stateful one follows the document's links from a created item
and an accepted job to the operations on them. Its settings and hooks live in
tests/schemathesis/ (each says why).
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.support.process import KeelProcess
from tests.support.services import REPO

SEED = 20261130
EXAMPLES = 50  # per operation and phase: ~1,300 requests, about ten seconds


async def echo(request: web.Request) -> web.Response:
    body = await request.read()
    return web.json_response({"method": request.method, "path": request.path, "bytes": len(body)})


async def test_the_document_matches_the_server(tmp_path: Path) -> None:
    upstream_app = web.Application()
    upstream_app.router.add_route("*", "/{tail:.*}", echo)
    upstream = TestServer(upstream_app)
    await upstream.start_server()
    keel = KeelProcess(
        tmp_path,
        "",
        env={
            "KEEL_SERVER__DRAIN_DELAY": "0",
            # schemathesis sends ~100 requests a second from one address.
            "KEEL_RATELIMIT__DEFAULT": "100000/second",
            "KEEL_UPSTREAMS__ECHO__URL": str(upstream.make_url("/")),
        },
    )
    try:
        await keel.start()
        await keel.wait_until(lambda: keel.answers("/readyz"), what="/readyz")
        schemathesis = await asyncio.create_subprocess_exec(
            Path(sys.executable).parent / "schemathesis",
            "--config-file",
            str(REPO / "tests" / "schemathesis" / "schemathesis.toml"),
            "run",
            f"{keel.url}/api/openapi.json",
            "--checks",
            "all",
            "--seed",
            str(SEED),
            "--max-examples",
            str(EXAMPLES),
            "--generation-database",
            "none",
            "--no-color",
            cwd=tmp_path,
            env={
                **os.environ,
                "SCHEMATHESIS_HOOKS": "tests.schemathesis.hooks",
                "PYTHONPATH": str(REPO),
            },
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await asyncio.wait_for(schemathesis.communicate(), timeout=300)
        report = output.decode(errors="replace")
        assert schemathesis.returncode == 0, report
        operations = await keel.operations() - 1  # all but GET /api/openapi.json, the document
        assert f"Selected: {operations}/{operations}" in report, report
        assert f"Tested: {operations}" in report, report
        assert "Missing test data" not in report, report  # every operation reached real data
    finally:
        await keel.kill()
        await upstream.close()
