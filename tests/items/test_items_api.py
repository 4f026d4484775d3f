"""The items API of DESIGN.md, status by status, on SQLite and on PostgreSQL shards."""

from __future__ import annotations

import asyncio
import itertools
import re
from collections import Counter
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from app.items import ITEMS
from app.items.model import ItemEvent, ItemInput

LAMP = {"name": "lamp", "price": 12.5, "tags": ["home", "light"]}
SERVER_ID = re.compile(r"[0-9A-HJKMNP-TV-Z]{26}")  # Crockford base32: no I, L, O, U
ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|\+00:00)")
JSON = {"Content-Type": "application/json"}


async def error_of(response: Any, status: int, code: str) -> dict[str, Any]:
    """The error body, after checking the status, the shape and the code."""
    assert response.status == status, await response.text()
    assert response.content_type == "application/json"
    body = await response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    return dict(body["error"])


async def create(client: TestClient, **fields: Any) -> dict[str, Any]:
    response = await client.post("/api/items", json={**LAMP, **fields})
    assert response.status == 201, await response.text()
    return dict(await response.json())


async def get(client: TestClient, item_id: str) -> dict[str, Any]:
    response = await client.get(f"/api/items/{item_id}")
    assert response.status == 200, await response.text()
    return dict(await response.json())


async def list_all(client: TestClient) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        params = {"limit": "200"} | ({"cursor": cursor} if cursor else {})
        response = await client.get("/api/items", params=params)
        assert response.status == 200, await response.text()
        page = await response.json()
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items


# --- create -----------------------------------------------------------------


async def test_create_is_201_with_location_etag_and_the_item(client: TestClient) -> None:
    response = await client.post("/api/items", json=LAMP)
    assert response.status == 201
    item = await response.json()
    assert set(item) == {"id", "name", "price", "tags", "version", "created_at", "updated_at"}
    assert SERVER_ID.fullmatch(item["id"]), item["id"]
    assert response.headers["Location"] == f"/api/items/{item['id']}"
    assert response.headers["ETag"] == '"1"'
    assert item["name"] == "lamp"
    assert item["price"] == 12.5
    assert item["tags"] == ["home", "light"]
    assert item["version"] == 1
    assert ISO_UTC.fullmatch(item["created_at"]), item["created_at"]
    assert item["created_at"] == item["updated_at"]
    assert await get(client, item["id"]) == item


async def test_tags_default_to_an_empty_list(client: TestClient) -> None:
    item = await create(client, tags=[])
    response = await client.post("/api/items", json={"name": "bare", "price": 0})
    assert response.status == 201
    bare = await response.json()
    assert bare["tags"] == [] == item["tags"]
    assert bare["price"] == 0
    assert (await get(client, bare["id"]))["tags"] == []


async def test_ids_of_successive_creates_sort_in_creation_order(client: TestClient) -> None:
    ids = [(await create(client, name=f"n{i}"))["id"] for i in range(30)]
    assert len(set(ids)) == 30
    assert ids == sorted(ids)
    assert [item["id"] for item in await list_all(client)] == ids


# Ids do not depend on the dialect; SQLite is fast enough to make many per millisecond.
@pytest.mark.parametrize("layout", ["sqlite"])
async def test_ids_made_within_one_millisecond_still_sort_in_creation_order(
    client: TestClient,
) -> None:
    # Over HTTP a create takes about a millisecond, so the test above only
    # sometimes puts two in one millisecond. Started together, the creates take
    # their ids and timestamps one after the other before any of them writes (on a
    # slow disk one create after another can take over a millisecond each).
    store = client.app[ITEMS]
    items = await asyncio.gather(*(store.create(ItemInput(f"n{i}", 1.0, ())) for i in range(300)))
    ids = [item["id"] for item in items]
    same_ms = sum(a["created_at"] == b["created_at"] for a, b in itertools.pairwise(items))
    assert same_ms > 0, "no two creates in one millisecond: this test shows nothing"
    assert ids == sorted(ids), f"{same_ms} pairs made in one millisecond"


# --- get --------------------------------------------------------------------


async def test_get_is_200_with_etag_and_cache_status(client: TestClient) -> None:
    item = await create(client)
    response = await client.get(f"/api/items/{item['id']}")
    assert response.status == 200
    assert await response.json() == item
    assert response.headers["ETag"] == '"1"'
    assert response.headers["Cache-Status"] == "keel; fwd=bypass"


async def test_if_none_match_that_matches_is_304_without_a_body(client: TestClient) -> None:
    item = await create(client)
    for header in ['"1"', "*", 'W/"1"', '"7", "1"']:
        response = await client.get(f"/api/items/{item['id']}", headers={"If-None-Match": header})
        assert response.status == 304, header
        assert await response.read() == b""
        assert response.headers["ETag"] == '"1"'


async def test_if_none_match_that_does_not_match_is_200(client: TestClient) -> None:
    item = await create(client)
    await client.put(f"/api/items/{item['id']}", json=LAMP)  # now version 2
    response = await client.get(f"/api/items/{item['id']}", headers={"If-None-Match": '"1"'})
    assert response.status == 200
    assert (await response.json())["version"] == 2
    assert response.headers["ETag"] == '"2"'


async def test_get_unknown_is_404(client: TestClient) -> None:
    error = await error_of(await client.get("/api/items/no-such-item"), 404, "not_found")
    assert "no-such-item" in error["message"]


BAD_PATH_IDS = ["x" * 129, "%20", "a%20b", "caf%C3%A9", "a%2Fb", "semi%3Bcolon"]


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
async def test_an_invalid_id_in_the_path_is_422(client: TestClient, method: str) -> None:
    for raw_id in BAD_PATH_IDS:
        response = await client.request(method, f"/api/items/{raw_id}", json=LAMP)
        error = await error_of(response, 422, "invalid")
        assert [d["field"] for d in error["details"]] == ["id"], raw_id
    assert await list_all(client) == []


# --- put --------------------------------------------------------------------


async def test_put_creates_at_a_client_id_then_replaces(client: TestClient) -> None:
    response = await client.put("/api/items/sku:A-1.b_2", json=LAMP)
    assert response.status == 201
    created = await response.json()
    assert response.headers["Location"] == "/api/items/sku:A-1.b_2"
    assert response.headers["ETag"] == '"1"'
    assert created["id"] == "sku:A-1.b_2"
    assert created["version"] == 1
    assert created["created_at"] == created["updated_at"]

    await asyncio.sleep(0.01)  # timestamps have millisecond resolution
    response = await client.put("/api/items/sku:A-1.b_2", json={"name": "desk", "price": 99})
    assert response.status == 200
    assert "Location" not in response.headers
    assert response.headers["ETag"] == '"2"'
    replaced = await response.json()
    assert replaced["version"] == 2
    assert replaced["name"] == "desk"
    assert replaced["price"] == 99
    assert replaced["tags"] == []  # replaced, not merged
    assert replaced["created_at"] == created["created_at"]
    assert replaced["updated_at"] > created["updated_at"]
    assert await get(client, "sku:A-1.b_2") == replaced


async def test_a_128_character_client_id_is_accepted(client: TestClient) -> None:
    item_id = "a" * 128
    response = await client.put(f"/api/items/{item_id}", json=LAMP)
    assert response.status == 201
    assert (await get(client, item_id))["id"] == item_id


async def test_put_with_the_current_if_match_replaces(client: TestClient) -> None:
    item = await create(client)
    response = await client.put(
        f"/api/items/{item['id']}", json={**LAMP, "name": "v2"}, headers={"If-Match": '"1"'}
    )
    assert response.status == 200
    assert response.headers["ETag"] == '"2"'
    response = await client.put(
        f"/api/items/{item['id']}", json={**LAMP, "name": "v3"}, headers={"If-Match": "*"}
    )
    assert response.status == 200
    assert (await get(client, item["id"]))["name"] == "v3"


async def test_put_with_a_stale_if_match_is_412_and_changes_nothing(client: TestClient) -> None:
    item = await create(client)
    await client.put(f"/api/items/{item['id']}", json={**LAMP, "name": "v2"})
    before = await get(client, item["id"])
    response = await client.put(
        f"/api/items/{item['id']}", json={**LAMP, "name": "lost"}, headers={"If-Match": '"1"'}
    )
    await error_of(response, 412, "precondition_failed")
    assert await get(client, item["id"]) == before


async def test_if_match_star_on_a_missing_item_is_412_and_creates_nothing(
    client: TestClient,
) -> None:
    response = await client.put("/api/items/ghost", json=LAMP, headers={"If-Match": "*"})
    await error_of(response, 412, "precondition_failed")
    await error_of(await client.get("/api/items/ghost"), 404, "not_found")


async def test_a_body_id_differing_from_the_path_is_422(client: TestClient) -> None:
    response = await client.put("/api/items/one", json={**LAMP, "id": "two"})
    error = await error_of(response, 422, "invalid")
    assert [d["field"] for d in error["details"]] == ["id"]
    await error_of(await client.get("/api/items/one"), 404, "not_found")
    await error_of(await client.get("/api/items/two"), 404, "not_found")
    response = await client.put("/api/items/one", json={**LAMP, "id": "one"})
    assert response.status == 201


async def test_a_get_body_round_trips_into_put(client: TestClient) -> None:
    item = await create(client)
    body = await get(client, item["id"])
    body["name"] = "renamed"
    body["version"] = 41  # read-only fields are ignored, not trusted
    body["created_at"] = "1999-01-01T00:00:00.000Z"
    response = await client.put(f"/api/items/{item['id']}", json=body, headers={"If-Match": '"1"'})
    assert response.status == 200, await response.text()
    replaced = await response.json()
    assert replaced["name"] == "renamed"
    assert replaced["version"] == 2
    assert replaced["created_at"] == item["created_at"]


# --- validation and bodies --------------------------------------------------


INVALID_ITEMS: list[tuple[Any, list[str]]] = [
    ({"price": 1}, ["name"]),
    ({"name": "", "price": 1}, ["name"]),
    ({"name": "x" * 201, "price": 1}, ["name"]),
    ({"name": 5, "price": 1}, ["name"]),
    ({"name": "a"}, ["price"]),
    ({"name": "a", "price": -0.01}, ["price"]),
    ({"name": "a", "price": "1"}, ["price"]),
    ({"name": "a", "price": True}, ["price"]),
    ({"name": "a", "price": None}, ["price"]),
    ({"name": "a", "price": 1, "tags": "home"}, ["tags"]),
    ({"name": "a", "price": 1, "tags": ["ok", "t" * 101]}, ["tags[1]"]),
    ({"name": "a", "price": 1, "tags": ["ok", ""]}, ["tags[1]"]),
    ({"name": "a", "price": 1, "tags": [3]}, ["tags[0]"]),
    ({"name": "a", "price": 1, "tags": ["t"] * 51}, ["tags"]),
    ({"name": "a", "price": 1, "colour": "red"}, ["colour"]),
    (
        {"name": "x" * 201, "price": -1, "tags": "no", "colour": "red", "size": 3},
        ["colour", "name", "price", "size", "tags"],
    ),
    ([LAMP], ["(body)"]),
    ("lamp", ["(body)"]),
]


@pytest.mark.parametrize("method", ["POST", "PUT"])
async def test_an_invalid_item_is_422_with_one_entry_per_bad_field(
    client: TestClient, method: str
) -> None:
    path = "/api/items" if method == "POST" else "/api/items/target"
    for body, fields in INVALID_ITEMS:
        error = await error_of(await client.request(method, path, json=body), 422, "invalid")
        details = error["details"]
        assert sorted(d["field"] for d in details) == sorted(fields), body
        assert all(isinstance(d["message"], str) and d["message"] for d in details)
    assert await list_all(client) == []


async def test_the_limits_themselves_are_valid(client: TestClient) -> None:
    item = await create(client, name="x" * 200, price=0, tags=["t" * 100] * 50)
    assert item["name"] == "x" * 200
    assert len(item["tags"]) == 50


async def test_a_price_that_is_no_finite_number_is_refused(client: TestClient) -> None:
    # NaN and Infinity are not JSON (400); 1e400 and a 400-digit integer are
    # JSON numbers no float holds: refused as JSON (400) or as a price (422),
    # never a 500 (Python's own json turns 1e400 into inf, and math.isfinite
    # raises OverflowError on a huge int).
    for price in ["NaN", "Infinity", "-Infinity", "1e400", "-1e400", "9" * 400]:
        body = f'{{"name": "a", "price": {price}}}'
        response = await client.post("/api/items", data=body, headers=JSON)
        assert response.status in (400, 422), (price, await response.text())
        if response.status == 400:
            await error_of(response, 400, "bad_json")
        else:
            error = await error_of(response, 422, "invalid")
            assert [d["field"] for d in error["details"]] == ["price"], price
    assert await list_all(client) == []


@pytest.mark.parametrize(
    ("name", "statuses"),
    [
        # Valid JSON, but PostgreSQL text cannot hold NUL: store it or say 422.
        pytest.param("nul\u0000byte", (201, 422), id="nul"),
        # "\ud800" is JSON no UTF-8 can encode: refuse it as JSON or as a name.
        pytest.param("lone \ud800 surrogate", (201, 400, 422), id="lone-surrogate"),
    ],
)
async def test_a_name_a_shard_cannot_store_is_refused_not_a_500(
    client: TestClient, name: str, statuses: tuple[int, ...]
) -> None:
    for method, path in [("POST", "/api/items"), ("PUT", "/api/items/odd")]:
        response = await client.request(method, path, json={"name": name, "price": 1})
        assert response.status in statuses, await response.text()
        if response.status == 201:
            item = await response.json()
            assert (await get(client, item["id"]))["name"] == name
        elif response.status == 400:
            await error_of(response, 400, "bad_json")
        else:
            error = await error_of(response, 422, "invalid")
            assert [d["field"] for d in error["details"]] == ["name"]


@pytest.mark.parametrize("method", ["POST", "PUT"])
async def test_malformed_json_is_400_bad_json(client: TestClient, method: str) -> None:
    path = "/api/items" if method == "POST" else "/api/items/target"
    for body in [b"{", b"", b'{"name": "a",}', b"\xff\xfe"]:
        response = await client.request(method, path, data=body, headers=JSON)
        await error_of(response, 400, "bad_json")


@pytest.mark.parametrize("method", ["POST", "PUT"])
async def test_a_body_that_is_not_json_is_415(client: TestClient, method: str) -> None:
    path = "/api/items" if method == "POST" else "/api/items/target"
    response = await client.request(
        method, path, data='{"name": "a", "price": 1}', headers={"Content-Type": "text/plain"}
    )
    await error_of(response, 415, "unsupported_media_type")
    assert await list_all(client) == []


# --- delete -----------------------------------------------------------------


async def test_delete_is_204_then_404(client: TestClient) -> None:
    item = await create(client)
    response = await client.delete(f"/api/items/{item['id']}")
    assert response.status == 204
    assert await response.read() == b""
    await error_of(await client.get(f"/api/items/{item['id']}"), 404, "not_found")
    await error_of(await client.delete(f"/api/items/{item['id']}"), 404, "not_found")


async def test_delete_honours_if_match(client: TestClient) -> None:
    item = await create(client)
    await client.put(f"/api/items/{item['id']}", json=LAMP)  # now version 2
    response = await client.delete(f"/api/items/{item['id']}", headers={"If-Match": '"1"'})
    await error_of(response, 412, "precondition_failed")
    assert (await get(client, item["id"]))["version"] == 2
    response = await client.delete(f"/api/items/{item['id']}", headers={"If-Match": '"2"'})
    assert response.status == 204
    response = await client.delete(f"/api/items/{item['id']}", headers={"If-Match": "*"})
    await error_of(response, 412, "precondition_failed")


# --- list -------------------------------------------------------------------


async def limit_is_refused(client: TestClient, limit: str) -> None:
    response = await client.get("/api/items", params={"limit": limit})
    error = await error_of(response, 422, "invalid")
    assert [d["field"] for d in error["details"]] == ["limit"], limit


async def test_a_limit_outside_1_to_200_is_422(client: TestClient) -> None:
    for limit in ["0", "201", "x", "-1", "1.5", "", " 5", "1e2", "99999999999999999999"]:
        await limit_is_refused(client, limit)


async def test_a_limit_of_non_ascii_digits_is_422_not_500(client: TestClient) -> None:
    await limit_is_refused(client, "²")  # str.isdigit() says yes, int() says no


async def test_the_default_limit_is_50_and_200_is_allowed(client: TestClient) -> None:
    ids = sorted([(await create(client, name=f"n{i}"))["id"] for i in range(55)])
    response = await client.get("/api/items")
    assert response.status == 200
    page = await response.json()
    assert set(page) == {"items", "next_cursor"}
    assert [item["id"] for item in page["items"]] == ids[:50]
    assert isinstance(page["next_cursor"], str)
    response = await client.get("/api/items", params={"cursor": page["next_cursor"]})
    page = await response.json()
    assert [item["id"] for item in page["items"]] == ids[50:]
    assert page["next_cursor"] is None
    response = await client.get("/api/items", params={"limit": "200"})
    page = await response.json()
    assert [item["id"] for item in page["items"]] == ids
    assert page["next_cursor"] is None


async def test_an_empty_list_is_one_empty_page(client: TestClient) -> None:
    response = await client.get("/api/items")
    assert response.status == 200
    assert await response.json() == {"items": [], "next_cursor": None}


async def test_a_list_page_holds_whole_items(client: TestClient) -> None:
    item = await create(client)
    response = await client.get("/api/items", params={"limit": "1"})
    assert (await response.json())["items"] == [item]


async def test_a_garbage_cursor_is_400(client: TestClient) -> None:
    await create(client)
    for cursor in ["garbage", "!!!!", "AAAAAAAAAAAAAAAAAAAA", "é", "a" * 5000, "eyJ2IjoxfQ"]:
        response = await client.get("/api/items", params={"cursor": cursor})
        await error_of(response, 400, "bad_request")


async def test_a_tampered_cursor_is_400(client: TestClient) -> None:
    for i in range(3):
        await create(client, name=f"n{i}")
    response = await client.get("/api/items", params={"limit": "1"})
    cursor = (await response.json())["next_cursor"]
    assert re.fullmatch(r"[A-Za-z0-9_-]+", cursor), "a cursor is URL-safe"
    assert (await client.get("/api/items", params={"cursor": cursor})).status == 200
    for position in (0, len(cursor) // 2, len(cursor) - 2):
        flipped = "A" if cursor[position] != "A" else "B"
        tampered = cursor[:position] + flipped + cursor[position + 1 :]
        response = await client.get("/api/items", params={"cursor": tampered})
        await error_of(response, 400, "bad_request")
    response = await client.get("/api/items", params={"cursor": cursor[:-3]})
    await error_of(response, 400, "bad_request")


# --- events -----------------------------------------------------------------


async def test_every_item_change_is_published_in_order(client: TestClient) -> None:
    events: list[ItemEvent] = []

    async def record(event: ItemEvent) -> None:
        events.append(event)

    client.app[ITEMS].events.subscribe(record)
    first = await create(client)
    await client.put(f"/api/items/{first['id']}", json={**LAMP, "name": "v2"})
    await client.put("/api/items/chosen", json=LAMP)
    await client.delete(f"/api/items/{first['id']}")
    # Refused and missed changes publish nothing.
    await client.put("/api/items/chosen", json=LAMP, headers={"If-Match": '"9"'})
    await client.delete("/api/items/nothing-here")
    await client.post("/api/items", json={"name": ""})

    assert [(e.event, e.id) for e in events] == [
        ("created", first["id"]),
        ("updated", first["id"]),
        ("created", "chosen"),
        ("deleted", first["id"]),
    ]
    assert events[0].item == first
    assert events[1].item is not None
    assert events[1].item["name"] == "v2"
    assert events[1].item["version"] == 2
    assert events[2].item is not None
    assert events[2].item["version"] == 1
    assert events[3].item is None


# --- concurrency ------------------------------------------------------------


async def test_parallel_creates_get_distinct_ids_and_are_all_listed(client: TestClient) -> None:
    responses = await asyncio.gather(
        *(client.post("/api/items", json={**LAMP, "name": f"p{i}"}) for i in range(50))
    )
    assert [r.status for r in responses] == [201] * 50
    ids = [(await r.json())["id"] for r in responses]
    assert len(set(ids)) == 50
    listed = await list_all(client)
    assert sorted(item["id"] for item in listed) == sorted(ids)
    assert {item["name"] for item in listed} == {f"p{i}" for i in range(50)}


async def test_conflicting_puts_with_the_same_if_match_exactly_one_wins(
    client: TestClient,
) -> None:
    item = await create(client)
    responses = await asyncio.gather(
        *(
            client.put(
                f"/api/items/{item['id']}",
                json={**LAMP, "name": f"writer-{i}"},
                headers={"If-Match": '"1"'},
            )
            for i in range(20)
        )
    )
    statuses = Counter(r.status for r in responses)
    assert statuses == {200: 1, 412: 19}
    (winner,) = [r for r in responses if r.status == 200]
    won = await winner.json()
    final = await get(client, item["id"])
    assert final["version"] == 2
    assert final == won


async def test_parallel_puts_without_if_match_create_once_and_count_every_version(
    client: TestClient,
) -> None:
    responses = await asyncio.gather(
        *(client.put("/api/items/race", json={**LAMP, "name": f"w{i}"}) for i in range(20))
    )
    statuses = Counter(r.status for r in responses)
    assert statuses == {201: 1, 200: 19}
    versions = sorted([(await r.json())["version"] for r in responses])
    assert versions == list(range(1, 21))
    assert (await get(client, "race"))["version"] == 20


async def test_parallel_deletes_with_the_same_if_match_exactly_one_wins(
    client: TestClient,
) -> None:
    item = await create(client)
    responses = await asyncio.gather(
        *(client.delete(f"/api/items/{item['id']}", headers={"If-Match": '"1"'}) for _ in range(10))
    )
    assert Counter(r.status for r in responses) == {204: 1, 412: 9}


async def test_a_whole_price_reads_back_the_same_from_every_endpoint(client) -> None:
    created = await client.post("/api/items", json={"name": "laptop", "price": 999})
    item = await created.json()
    fetched = await (await client.get(f"/api/items/{item['id']}")).json()
    listed = (await (await client.get("/api/items")).json())["items"]
    assert item["price"] == fetched["price"] == listed[0]["price"] == 999
    assert type(item["price"]) is type(fetched["price"]) is type(listed[0]["price"]) is float
