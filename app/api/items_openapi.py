"""The OpenAPI entries of `/api/items` (app/api/items.py)."""

from __future__ import annotations

from typing import Any

from app.api.path_id import ID_SCHEMA
from app.cache import CACHE_STATUS
from app.core.openapi import error_response, json_content
from app.items.model import ETAG_LIST_PATTERN, ITEM, ITEM_INPUT, ITEM_REPLACEMENT

_ITEM = {"$ref": "#/components/schemas/Item"}
_ID_PARAM = {"name": "id", "in": "path", "required": True, "schema": ID_SCHEMA}
_ETAG_LIST = {"type": "string", "format": "entity-tags", "pattern": f"^{ETAG_LIST_PATTERN}$"}
_IF_MATCH = {
    "name": "If-Match",
    "in": "header",
    "schema": _ETAG_LIST,
    "description": "Change only this version: 412 when the item is at another (or gone)",
}
_ETAG = {"ETag": {"schema": {"type": "string"}, "description": "The item's version"}}
_CACHE_STATUS = {
    "Cache-Status": {
        "schema": {"type": "string", "enum": list(CACHE_STATUS.values())},
        "description": "RFC 9211: answered from the cache (hit), loaded from the shard "
        "(fwd=miss), or the cache was unavailable (fwd=bypass)",
    }
}
ITEM_SCHEMA = ITEM.json_schema()
_UNAVAILABLE = error_response("A shard that holds the data is unavailable (Retry-After)")


# After a create, the stateful tests (and readers) know where the item is.
_ITEM_LINKS = {
    operation: {"operationId": operation, "parameters": {"id": "$response.body#/id"}}
    for operation in ("getItem", "putItem", "deleteItem")
}


def _item_ok(description: str) -> dict[str, Any]:
    return {"description": description, "headers": _ETAG, "content": json_content(_ITEM)}


OPENAPI_PATHS: dict[str, Any] = {
    "/api/items": {
        "post": {
            "operationId": "createItem",
            "tags": ["items"],
            "requestBody": {"required": True, "content": json_content(ITEM_INPUT.json_schema())},
            "responses": {
                "201": {**_item_ok("Created; Location names it"), "links": _ITEM_LINKS},
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
                {
                    "name": "cursor",
                    "in": "query",
                    "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]*$"},
                    "description": "The next_cursor of the page before (opaque: another is"
                    " 400); none or empty: the first page",
                },
            ],
            "responses": {
                "200": {
                    "description": "A page; next_cursor is null on the last one",
                    "content": json_content(
                        {
                            "type": "object",
                            "required": ["items", "next_cursor"],
                            "properties": {
                                "items": {"type": "array", "items": _ITEM},
                                "next_cursor": {"type": ["string", "null"]},
                            },
                        }
                    ),
                    "links": {
                        "nextPage": {
                            "operationId": "listItems",
                            "parameters": {"cursor": "$response.body#/next_cursor"},
                        }
                    },
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
            "parameters": [{"name": "If-None-Match", "in": "header", "schema": _ETAG_LIST}],
            "responses": {
                "200": {
                    **_item_ok("The item; Cache-Status tells whether the cache answered"),
                    "headers": {**_ETAG, **_CACHE_STATUS},
                },
                "304": {"description": "Not modified (If-None-Match)", "headers": _CACHE_STATUS},
                "400": error_response("If-None-Match is not `*` or a list of entity tags"),
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
            "parameters": [_IF_MATCH],
            "requestBody": {
                "required": True,
                "content": json_content(ITEM_REPLACEMENT.json_schema()),
            },
            "responses": {
                "200": _item_ok("Replaced"),
                "201": _item_ok("Created"),
                "400": error_response("Malformed JSON, or an If-Match that is no list of tags"),
                "412": error_response("If-Match does not match the current version"),
                "413": error_response("Body too large"),
                "415": error_response("Not JSON"),
                "422": error_response("Invalid item or id"),
                "503": _UNAVAILABLE,
            },
        },
        "delete": {
            "operationId": "deleteItem",
            "tags": ["items"],
            "parameters": [_IF_MATCH],
            "responses": {
                "204": {"description": "Deleted"},
                "400": error_response("If-Match is not `*` or a list of entity tags"),
                "404": error_response("No such item"),
                "412": error_response("If-Match does not match the current version"),
                "422": error_response("Invalid id"),
                "503": _UNAVAILABLE,
            },
        },
    },
}
