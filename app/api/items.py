"""`/api/items`: create, read (ETag, If-None-Match), replace (If-Match), delete, list.

The routes are added by the sharding plugin, which owns the storage they use.
With the cache plugin enabled, reads go through `app[CACHE]` and every
committed write or delete invalidates the item before the response is sent.
A shard that cannot answer raises `ShardUnavailable`: a 503 naming it (app/errors.py).
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from app.api.json_body import read_json
from app.api.path_id import ID_PATTERN, path_id
from app.cache import CACHE, CACHE_STATUS, Cache
from app.cache.read_ahead import READ_AHEAD, reads_cache_key
from app.core.json_codec import json_response
from app.errors import BadRequest, Invalid, NotFound, PreconditionFailed
from app.items import ITEMS, ItemEvent, ItemStore, item_cache_key
from app.items.model import (
    ITEM_REPLACEMENT,
    ValidationFailed,
    decode_cursor,
    encode_cursor,
    etag,
    etag_matches,
    is_etag_list,
    validate,
)
from app.items.store import Conflict
from app.sharding.shards import ShardSet

_DIGITS = re.compile(r"[0-9]{1,4}")  # ASCII only: str.isdigit() accepts "²"
DEFAULT_LIMIT = 50
MAX_LIMIT = 200
# Without the cache plugin every read goes to the shard.
NO_CACHE = CACHE_STATUS["bypass"]


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
    item = await request.app[ITEMS].create(data)
    response = _item_response(item, status=201)
    response.headers["Location"] = f"/api/items/{item['id']}"
    return response


def _cache_key_of(request: web.Request) -> str | None:
    item_id = request.match_info["id"]
    return item_cache_key(item_id) if ID_PATTERN.fullmatch(item_id) else None


@reads_cache_key(_cache_key_of)
async def get_item(request: web.Request) -> web.Response:
    item_id = path_id(request, "item")
    store = request.app[ITEMS]
    cache = request.app.get(CACHE)
    if cache is None:
        item, cache_status = await store.get(item_id), NO_CACHE
    else:
        lookup = await cache.get_or_load(
            item_cache_key(item_id), lambda: store.get(item_id), ahead=request.get(READ_AHEAD)
        )
        item, cache_status = lookup.value, CACHE_STATUS[lookup.status]
    if item is None:
        raise NotFound(f"no item {item_id}", headers={"Cache-Status": cache_status})
    if_none_match = _condition(request, "If-None-Match")
    if if_none_match is not None and etag_matches(if_none_match, item["version"]):
        response = web.Response(status=304)
        response.headers["ETag"] = etag(item["version"])
    else:
        response = _item_response(item)
    response.headers["Cache-Status"] = cache_status
    return response


def _condition(request: web.Request, header: str) -> str | None:
    """A conditional header's value; 400 when it is no list of entity tags (nor `*`)."""
    value = request.headers.get(header)
    if value is not None and not is_etag_list(value):
        raise BadRequest(
            f"{header} is not `*` or a list of entity tags",
            details=[{"field": header, "message": 'expected `*` or tags like `"3"`, `W/"3"`'}],
        )
    return value


async def _expected_version(request: web.Request, store: ItemStore, item_id: str) -> int | None:
    """The version `If-Match` allows to be changed, or None when there is no `If-Match`."""
    if_match = _condition(request, "If-Match")
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
    item_id = path_id(request, "item")
    body = await read_json(request)
    if isinstance(body, dict) and "id" in body:
        if body["id"] != item_id:
            raise Invalid(
                "the body's id differs from the URL's",
                details=[{"field": "id", "message": f"expected {item_id!r} or no id"}],
            )
        body = {key: value for key, value in body.items() if key != "id"}
    try:
        data = validate(body, ITEM_REPLACEMENT)
    except ValidationFailed as exc:
        raise Invalid("the item is not valid", details=exc.problems) from None
    store = request.app[ITEMS]
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
    item_id = path_id(request, "item")
    store = request.app[ITEMS]
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
    page = await request.app[ITEMS].list(limit, after)
    next_cursor = encode_cursor(page.next_after) if page.next_after is not None else None
    return json_response({"items": page.items, "next_cursor": next_cursor})


def setup(app: web.Application, shards: ShardSet, cache: Cache | None) -> None:
    """Publish `app[ITEMS]` on `shards`, add the routes; with `cache`, keep it coherent."""
    store = app[ITEMS] = ItemStore(shards)
    if cache is not None:

        async def invalidate(event: ItemEvent) -> None:
            # Created too: a 404 for this id may be cached.
            await cache.delete(item_cache_key(event.id))

        store.events.subscribe(invalidate)
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
