"""The `{id}` of a resource path (items, jobs): checked once, the same way for every resource."""

from __future__ import annotations

import re

from aiohttp import web

from app.errors import Invalid

ID_PATTERN = re.compile(r"[A-Za-z0-9._:-]{1,128}")
ID_RULE = "expected 1..128 characters of [A-Za-z0-9._:-]"
# The same rule as a JSON Schema, for the OpenAPI document.
ID_SCHEMA = {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,128}$"}


def path_id(request: web.Request, noun: str) -> str:
    """`request`'s `{id}`; 422 `invalid` naming the field when it is not a valid id."""
    value = request.match_info["id"]
    if not ID_PATTERN.fullmatch(value):
        raise Invalid(f"invalid {noun} id", details=[{"field": "id", "message": ID_RULE}])
    return value
