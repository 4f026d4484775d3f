"""JSON in and out of Keel, through orjson (several times faster than `json`).

orjson is strict where it matters: it refuses NaN and Infinity, invalid UTF-8
and non-string keys, so what it accepts is portable JSON.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import web

JSONDecodeError = orjson.JSONDecodeError  # a subclass of json.JSONDecodeError


def dumps(value: Any) -> bytes:
    return orjson.dumps(value)


def loads(data: bytes | str) -> Any:
    return orjson.loads(data)


def json_response(
    data: Any, *, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=orjson.dumps(data), status=status, headers=headers, content_type="application/json"
    )
