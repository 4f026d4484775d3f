"""The OpenAPI entries of `/api/items` (app/api/items.py)."""

from __future__ import annotations

from typing import Any

from app.api.path_id import ID_SCHEMA
from app.cache import CACHE_STATUS
from app.core.openapi import error_response, json_content

_ITEM = {"$ref": "#/components/schemas/Item"}
_ID_PARAM = {"name": "id", "in": "path", "required": True, "schema": ID_SCHEMA}
_ETAG = {"ETag": {"schema": {"type": "string"}, "description": "The item's version"}}
_CACHE_STATUS = {
    "Cache-Status": {
        "schema": {"type": "string", "enum": list(CACHE_STATUS.values())},
        "description": "RFC 9211: answered from the cache (hit), loaded from the shard "
        "(fwd=miss), or the cache was unavailable (fwd=bypass)",
    }
}
_ITEM_INPUT = {
    "type": "object",
    "required": ["name", "price"],
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 200},
        "price": {"type": "number", "minimum": 0},
        "tags": {"type": "array", "maxItems": 50, "items": {"type": "string", "minLength": 1}},
    },
}
ITEM_SCHEMA = {
    "type": "object",
    "required": ["id", "name", "price", "tags", "version", "created_at", "updated_at"],
    "properties": {
        "id": {"type": "string"},
        "name": {"type": "string"},
        "price": {"type": "number"},
        "tags": {"type": "array", "items": {"type": "string"}},
        "version": {"type": "integer", "minimum": 1},
        "created_at": {"type": "string", "format": "date-time"},
        "updated_at": {"type": "string", "format": "date-time"},
    },
}
_UNAVAILABLE = error_response("A shard that holds the data is unavailable (Retry-After)")


def _item_ok(description: str) -> dict[str, Any]:
    return {"description": description, "headers": _ETAG, "content": json_content(_ITEM)}


OPENAPI_PATHS: dict[str, Any] = {
    "/api/items": {
        "post": {
            "operationId": "createItem",
            "tags": ["items"],
            "requestBody": {"required": True, "content": json_content(_ITEM_INPUT)},
            "responses": {
                "201": _item_ok("Created; Location names it"),
                "400": error_response("Malformed JSON"),
                "413": error_response("Body too large"),
                "415": error_response("Not JSON"),
                "422": error_response("Invalid item: details lists each field"),
                "503": _UNAVAILABLE,
            },
        },
        "get": {
            "operationId": "listItems",
            "tags": ["items"],
            "summary": "Every item, in id order across all shards, a page at a time",
            "parameters": [
                {
                    "name": "limit",
                    "in": "query",
                    "schema": {"type": "integer", "minimum": 1, "maximum": 200, "default": 50},
                },
                {"name": "cursor", "in": "query", "schema": {"type": "string"}},
            ],
            "responses": {
                "200": {
                    "description": "A page; next_cursor is null on the last one",
                    "content": json_content(
                        {
                            "type": "object",
                            "properties": {
                                "items": {"type": "array", "items": _ITEM},
                                "next_cursor": {"type": ["string", "null"]},
                            },
                        }
                    ),
                },
                "400": error_response("Invalid cursor"),
                "422": error_response("Invalid limit"),
                "503": _UNAVAILABLE,
            },
        },
    },
    "/api/items/{id}": {
        "parameters": [_ID_PARAM],
        "get": {
            "operationId": "getItem",
            "tags": ["items"],
            "parameters": [{"name": "If-None-Match", "in": "header", "schema": {"type": "string"}}],
            "responses": {
                "200": {
                    **_item_ok("The item; Cache-Status tells whether the cache answered"),
                    "headers": {**_ETAG, **_CACHE_STATUS},
                },
                "304": {"description": "Not modified (If-None-Match)", "headers": _CACHE_STATUS},
                "404": {
                    **error_response("No such item (cached for negative_ttl)"),
                    "headers": _CACHE_STATUS,
                },
                "422": error_response("Invalid id"),
                "503": _UNAVAILABLE,
            },
        },
        "put": {
            "operationId": "putItem",
            "tags": ["items"],
            "parameters": [{"name": "If-Match", "in": "header", "schema": {"type": "string"}}],
            "requestBody": {"required": True, "content": json_content(_ITEM_INPUT)},
            "responses": {
                "200": _item_ok("Replaced"),
                "201": _item_ok("Created"),
                "400": error_response("Malformed JSON"),
                "412": error_response("If-Match does not match the current version"),
                "415": error_response("Not JSON"),
                "422": error_response("Invalid item or id"),
                "503": _UNAVAILABLE,
            },
        },
        "delete": {
            "operationId": "deleteItem",
            "tags": ["items"],
            "parameters": [{"name": "If-Match", "in": "header", "schema": {"type": "string"}}],
            "responses": {
                "204": {"description": "Deleted"},
                "404": error_response("No such item"),
                "412": error_response("If-Match does not match the current version"),
                "503": _UNAVAILABLE,
            },
        },
    },
}
