"""The OpenAPI 3.1 document: core paths here, each plugin's contribution added to it.

The document is assembled from the same plugins that add the routes, so an
enabled plugin's routes are always described; a test compares the router with
the document in both directions, and schemathesis compares it with behaviour.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from aiohttp import web

from app import __version__


class OpenApiContributor(Protocol):
    """What a plugin adds to the document: its paths and schemas, then amendments to the
    finished document (the rate limiter adds 429 to every operation it limits)."""

    def openapi_paths(self) -> dict[str, Any]: ...

    def openapi_schemas(self) -> dict[str, Any]: ...

    def amend_openapi(self, document: dict[str, Any]) -> None: ...


OPENAPI = web.AppKey("keel.openapi", dict)

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string", "examples": ["not_found"]},
                "message": {"type": "string"},
                "details": {},
            },
        }
    },
}

READINESS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["status", "plugins"],
    "properties": {
        "status": {"enum": ["ready", "degraded", "starting", "draining", "stopped", "unavailable"]},
        "plugins": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "properties": {
                    "status": {"enum": ["ok", "degraded", "down"]},
                    "detail": {"type": "string"},
                },
            },
        },
    },
}


SCHEMAS: dict[str, Any] = {"Error": ERROR_SCHEMA, "Readiness": READINESS_SCHEMA}


def json_content(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def error_response(description: str) -> dict[str, Any]:
    """A response object whose body is the error shape (for plugins' documents too)."""
    return {
        "description": description,
        "content": json_content({"$ref": "#/components/schemas/Error"}),
    }


CORE_PATHS: dict[str, Any] = {
    "/healthz": {
        "get": {
            "operationId": "healthz",
            "summary": "Liveness: 200 while the process runs",
            "tags": ["operations"],
            "responses": {
                "200": {
                    "description": "The process is alive",
                    "content": json_content(
                        {"type": "object", "properties": {"status": {"const": "ok"}}}
                    ),
                }
            },
        }
    },
    "/readyz": {
        "get": {
            "operationId": "readyz",
            "summary": "Readiness: each plugin's status",
            "tags": ["operations"],
            "responses": {
                "200": {
                    "description": "Ready (possibly degraded)",
                    "content": json_content({"$ref": "#/components/schemas/Readiness"}),
                },
                "503": {
                    "description": "Starting, draining, or a required dependency is down",
                    "content": json_content({"$ref": "#/components/schemas/Readiness"}),
                },
            },
        }
    },
    "/api/openapi.json": {
        "get": {
            "operationId": "openapi",
            "summary": "This document",
            "tags": ["operations"],
            "responses": {
                "200": {"description": "OpenAPI 3.1", "content": json_content({"type": "object"})}
            },
        }
    },
}


def build_document(contributors: Iterable[OpenApiContributor]) -> dict[str, Any]:
    paths = dict(CORE_PATHS)
    schemas: dict[str, Any] = {}
    contributors = tuple(contributors)
    for plugin in contributors:
        paths.update(plugin.openapi_paths())
        schemas.update(plugin.openapi_schemas())
    document = {
        "openapi": "3.1.0",
        "info": {
            "title": "Keel",
            "version": __version__,
            "description": (
                "Every error is "
                '`{"error": {"code", "message", "details"}}`; '
                "every response carries `X-Request-ID`."
            ),
        },
        "paths": dict(sorted(paths.items())),
        "components": {"schemas": {**SCHEMAS, **schemas}},
    }
    for plugin in contributors:
        plugin.amend_openapi(document)
    return document


async def openapi_json(request: web.Request) -> web.Response:
    return web.json_response(request.app[OPENAPI])


def add_routes(app: web.Application, contributors: Iterable[OpenApiContributor]) -> None:
    app[OPENAPI] = build_document(contributors)
    app.router.add_get("/api/openapi.json", openapi_json, name="openapi")
