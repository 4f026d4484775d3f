"""`/api/items`: create, read (ETag, If-None-Match), replace (If-Match), delete, list.

The routes are added by the sharding plugin, which owns the storage they use.
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from app.api.json_body import read_json
from app.cache.cache import CACHE, CACHE_STATUS
from app.cache.read_ahead import READ_AHEAD, reads_cache_key
from app.core.json_codec import json_response
from app.core.openapi import error_response, json_content
from app.errors import BadRequest, Invalid, NotFound, PreconditionFailed, Unavailable
from app.items.model import (
    ID_PATTERN,
    ValidationFailed,
    decode_cursor,
    encode_cursor,
    etag,
    etag_matches,
    validate,
)
from app.items.store import Conflict, ItemStore
from app.sharding.backend import ShardUnavailable
from app.sharding.shards import ShardSet

ITEMS = web.AppKey("keel.items", ItemStore)

_DIGITS = re.compile(r"[0-9]{1,4}")  # ASCII only: str.isdigit() accepts "²"
DEFAULT_LIMIT = 50
MAX_LIMIT = 200
# Without the cache plugin every read goes to the shard.
NO_CACHE = CACHE_STATUS["bypass"]


def item_cache_key(item_id: str) -> str:
    return f"item:{item_id}"


class _ShardErrors:
    """A shard that cannot answer is a 503 naming it, with when to retry.

    A class rather than `@contextmanager`: it wraps every item read, and a
    generator per request is the costlier way to say the same.
    """

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: object
    ) -> None:
        if isinstance(exc, ShardUnavailable):
            raise Unavailable(
                f"{exc.shard} is unavailable; try again shortly",
                retry_after=exc.retry_after,
                details={"shard": exc.shard},
            ) from exc


_SHARD_ERRORS = _ShardErrors()


def shard_errors() -> _ShardErrors:
    return _SHARD_ERRORS


def _item_id(request: web.Request) -> str:
    item_id = request.match_info["id"]
    if not ID_PATTERN.fullmatch(item_id):
        raise Invalid(
            "invalid item id",
            details=[{"field": "id", "message": "expected 1..128 characters of [A-Za-z0-9._:-]"}],
        )
    return item_id


async def _valid_body(request: web.Request) -> Any:
    body = await read_json(request)
    try:
        return validate(body)
    except ValidationFailed as exc:
        raise Invalid("the item is not valid", details=exc.problems) from None


def _item_response(item: dict[str, Any], status: int = 200) -> web.Response:
    response = json_response(item, status=status)
    response.headers["ETag"] = etag(item["version"])
    return response


async def create_item(request: web.Request) -> web.Response:
    data = await _valid_body(request)
    with shard_errors():
        item = await request.app[ITEMS].create(data)
    response = _item_response(item, status=201)
    response.headers["Location"] = f"/api/items/{item['id']}"
    return response


def _cache_key_of(request: web.Request) -> str | None:
    item_id = request.match_info["id"]
    return item_cache_key(item_id) if ID_PATTERN.fullmatch(item_id) else None


@reads_cache_key(_cache_key_of)
async def get_item(request: web.Request) -> web.Response:
    item_id = _item_id(request)
    store = request.app[ITEMS]
    cache = request.app.get(CACHE)
    with shard_errors():
        if cache is None:
            item, cache_status = await store.get(item_id), NO_CACHE
        else:
            lookup = await cache.get_or_load(
                item_cache_key(item_id), lambda: store.get(item_id), ahead=request.get(READ_AHEAD)
            )
            item, cache_status = lookup.value, CACHE_STATUS[lookup.status]
    if item is None:
        raise NotFound(f"no item {item_id}", headers={"Cache-Status": cache_status})
    if_none_match = request.headers.get("If-None-Match")
    if if_none_match is not None and etag_matches(if_none_match, item["version"]):
        response = web.Response(status=304)
        response.headers["ETag"] = etag(item["version"])
    else:
        response = _item_response(item)
    response.headers["Cache-Status"] = cache_status
    return response


async def _expected_version(request: web.Request, store: ItemStore, item_id: str) -> int | None:
    """The version `If-Match` allows to be changed, or None when there is no `If-Match`."""
    if_match = request.headers.get("If-Match")
    if if_match is None:
        return None
    current = await store.get(item_id)
    if current is None or not etag_matches(if_match, current["version"]):
        raise PreconditionFailed(
            f"item {item_id} is not at the version given in If-Match",
            details={"current_etag": etag(current["version"]) if current else None},
        )
    return int(current["version"])


async def put_item(request: web.Request) -> web.Response:
    item_id = _item_id(request)
    body = await read_json(request)
    if isinstance(body, dict) and "id" in body and body["id"] != item_id:
        raise Invalid(
            "the body's id differs from the URL's",
            details=[{"field": "id", "message": f"expected {item_id!r} or no id"}],
        )
    try:
        data = validate(body)
    except ValidationFailed as exc:
        raise Invalid("the item is not valid", details=exc.problems) from None
    store = request.app[ITEMS]
    with shard_errors():
        expected = await _expected_version(request, store, item_id)
        try:
            item, created = await store.put(item_id, data, expected_version=expected)
        except Conflict:
            raise PreconditionFailed(f"item {item_id} changed meanwhile; fetch it again") from None
    response = _item_response(item, status=201 if created else 200)
    if created:
        response.headers["Location"] = f"/api/items/{item_id}"
    return response


async def delete_item(request: web.Request) -> web.Response:
    item_id = _item_id(request)
    store = request.app[ITEMS]
    with shard_errors():
        expected = await _expected_version(request, store, item_id)
        try:
            deleted = await store.delete(item_id, expected_version=expected)
        except Conflict:
            raise PreconditionFailed(f"item {item_id} changed meanwhile; fetch it again") from None
    if not deleted:
        raise NotFound(f"no item {item_id}")
    return web.Response(status=204)


def _limit(request: web.Request) -> int:
    raw = request.query.get("limit")
    if raw is None:
        return DEFAULT_LIMIT
    if not _DIGITS.fullmatch(raw) or not 1 <= int(raw) <= MAX_LIMIT:
        raise Invalid(
            "invalid limit",
            details=[{"field": "limit", "message": f"expected an integer 1..{MAX_LIMIT}"}],
        )
    return int(raw)


async def list_items(request: web.Request) -> web.Response:
    limit = _limit(request)
    cursor = request.query.get("cursor")
    after = None
    if cursor:
        try:
            after = decode_cursor(cursor)
        except ValueError as exc:
            raise BadRequest(f"invalid cursor: {exc}; start again without one") from None
    with shard_errors():
        page = await request.app[ITEMS].list(limit, after)
    next_cursor = encode_cursor(page.next_after) if page.next_after is not None else None
    return json_response({"items": page.items, "next_cursor": next_cursor})


def setup(app: web.Application, shards: ShardSet) -> None:
    app[ITEMS] = ItemStore(shards)
    # One resource per path, its methods as routes: the router then tries one
    # candidate per path, not one per method, on every request.
    items = app.router.add_resource("/api/items", name="items")
    items.add_route("POST", create_item)
    items.add_route("GET", list_items)
    items.add_route("HEAD", list_items)
    item = app.router.add_resource("/api/items/{id}", name="item")
    item.add_route("GET", get_item)
    item.add_route("HEAD", get_item)
    item.add_route("PUT", put_item)
    item.add_route("DELETE", delete_item)


_ITEM = {"$ref": "#/components/schemas/Item"}
_ID_PARAM = {
    "name": "id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,128}$"},
}
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
