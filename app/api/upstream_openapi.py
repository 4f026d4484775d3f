"""The OpenAPI entries of `ANY /api/upstream/{name}/{path}` (app/upstreams/proxy.py)."""

from __future__ import annotations

from typing import Any

from app.core.openapi import error_response
from app.upstreams.proxy import METHODS


def _operation(method: str, names: list[str]) -> dict[str, Any]:
    # The configured upstreams, when there are some; any other name is a 404.
    name: dict[str, Any] = {"type": "string", "enum": names} if names else {"type": "string"}
    return {
        "operationId": f"upstream_{method}",
        "summary": "Forward to [upstreams.<name>] through the breaker upstream.<name>",
        "tags": ["upstream"],
        "parameters": [
            {"name": "name", "in": "path", "required": True, "schema": name},
            {"name": "path", "in": "path", "required": True, "schema": {"type": "string"}},
        ],
        "responses": {
            "default": {"description": "The upstream's response, as it answered"},
            "404": error_response("No such upstream"),
            "502": error_response("The upstream could not be reached"),
            "503": error_response("The breaker is open (Retry-After says for how long)"),
            "504": error_response("The upstream did not answer within its timeout"),
        },
    }


def paths(names: list[str]) -> dict[str, Any]:
    """The entries for the upstreams configured (`[upstreams.<name>]`)."""
    return {
        "/api/upstream/{name}/{path}": {m.lower(): _operation(m.lower(), names) for m in METHODS}
    }
