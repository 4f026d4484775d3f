"""Read a request's JSON body, answering bad input with the right JSON error."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from app.core.json_codec import JSONDecodeError, loads
from app.errors import BadJSON, TooLarge, UnsupportedMediaType


async def read_json(request: web.Request) -> Any:
    """The parsed body: 415 if it is not JSON, 413 if too large, 400 if malformed."""
    if request.content_type != "application/json":
        raise UnsupportedMediaType(
            f'expected Content-Type "application/json", got "{request.content_type}"'
        )
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge as exc:
        raise TooLarge(exc.text or "request body is too large") from None
    try:
        return loads(raw)
    except JSONDecodeError as exc:
        raise BadJSON(f"body is not valid JSON: {exc}") from None
