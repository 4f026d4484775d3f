"""`/admin/api/*` and `/admin/ws`: state, breaker actions, dead jobs, the audit log.

Every endpoint needs a session (401 without); every POST its CSRF token (403
`csrf`) and an operator (403 `forbidden` for a viewer). Every action is
audited with what it did.
"""

from __future__ import annotations

from typing import Any

from aiohttp import hdrs, web

from app.admin.audit import AuditUnavailable
from app.admin.service import AdminService
from app.api.json_body import read_json
from app.breakers import ACTIONS, ActionResult
from app.core.json_codec import json_response
from app.errors import Invalid, NotFound, Unavailable, error_response
from app.queue.backend import QueueUnavailable
from app.sharding.backend import ShardUnavailable
from app.websocket.endpoint import origin_allowed

MAX_LIMIT = 1000
DEFAULT_LIMIT = 100
MAX_IDS = 1000


def limit_param(request: web.Request) -> int:
    text = request.query.get("limit")
    if text is None:
        return DEFAULT_LIMIT
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_LIMIT:
        raise Invalid(
            f"limit must be an integer 1..{MAX_LIMIT}",
            details=[{"field": "limit", "message": f"expected 1..{MAX_LIMIT}, got {text!r}"}],
        )
    return value


def job_selection(body: Any) -> list[str] | None:
    """`{"ids": [...]}` -> the ids; `{"all": true}` -> None; anything else: 422."""
    if not isinstance(body, dict):
        raise Invalid('expected an object: {"ids": [...]} or {"all": true}')
    unknown = sorted(set(body) - {"ids", "all"})
    problems = [{"field": name, "message": "unknown field"} for name in unknown]
    ids, everything = body.get("ids"), body.get("all")
    if ("ids" in body) == ("all" in body):
        problems.append({"field": "ids", "message": 'give either "ids" or "all": true'})
    elif "all" in body and everything is not True:
        problems.append({"field": "all", "message": "expected true"})
    elif "ids" in body and (
        not isinstance(ids, list)
        or not 1 <= len(ids) <= MAX_IDS
        or not all(isinstance(i, str) and 0 < len(i) <= 128 for i in ids)
    ):
        problems.append(
            {"field": "ids", "message": f"expected 1..{MAX_IDS} job ids (strings of 1..128)"}
        )
    if problems:
        raise Invalid("invalid job selection", details=problems)
    return list(dict.fromkeys(ids)) if isinstance(ids, list) else None


def describe_selection(ids: list[str] | None) -> str:
    if ids is None:
        return "all"
    shown = ", ".join(ids[:10])
    return shown if len(ids) <= 10 else f"{shown} (+{len(ids) - 10} more)"


def describe_result(result: ActionResult) -> str:
    parts = [f"applied on {len(result.applied)}"]
    if result.missing:
        parts.append(f"missing {', '.join(result.missing)}")
    if result.unknown:
        parts.append(f"unknown on {', '.join(result.unknown)}")
    if result.error:
        parts.append(result.error)
    return "; ".join(parts)


class Api:
    def __init__(self, service: AdminService) -> None:
        self.service = service

    async def state(self, request: web.Request) -> web.Response:
        await self.service.require_session(request)
        return json_response(await self.service.board.state(history=True))

    async def websocket(self, request: web.Request) -> web.StreamResponse:
        service = self.service
        session = await service.session_of(request)
        if session is None:
            return error_response(401, "unauthorized", "log in first: no session, or it ended")
        if not origin_allowed(request.headers.get(hdrs.ORIGIN), request.host, ()):
            return error_response(403, "forbidden", "the dashboard's socket is same-origin only")
        if service.push.closing:
            return error_response(
                503, "unavailable", "shutting down; reconnect", headers={"Retry-After": "1"}
            )
        if not web.WebSocketResponse().can_prepare(request).ok:
            return error_response(400, "bad_request", "GET /admin/ws expects a WebSocket handshake")
        return await service.push.handle(request, session)

    async def breaker_action(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        action = request.match_info["action"]
        if action not in ACTIONS:
            raise NotFound(
                f"unknown action {action!r}: expected one of {', '.join(ACTIONS)}",
                details={"actions": list(ACTIONS)},
            )
        session = await self.service.require_action(request, f"breaker.{action}", name)
        registry = self.service.breakers()
        if registry is None:
            raise NotFound("the breakers plugin is not enabled")
        result: ActionResult = await getattr(registry, action)(name)
        await self.service.audit(
            request, session, f"breaker.{action}", name, describe_result(result)
        )
        return json_response(result.as_dict())

    async def dead_jobs(self, request: web.Request) -> web.Response:
        await self.service.require_session(request)
        limit = limit_param(request)
        letters = self._dead_letters()
        try:
            dead = await letters.count()  # first: a listing holds the messages for a moment
            jobs = await letters.list(limit)
        except (QueueUnavailable, ShardUnavailable) as exc:
            raise Unavailable(f"the queue cannot list dead jobs now: {exc}", retry_after=2) from exc
        return json_response({"jobs": jobs, "dead": dead})

    async def requeue_dead(self, request: web.Request) -> web.Response:
        return await self._dead_action(request, "requeue")

    async def purge_dead(self, request: web.Request) -> web.Response:
        return await self._dead_action(request, "purge")

    async def _dead_action(self, request: web.Request, verb: str) -> web.Response:
        action = f"jobs.{verb}"
        session = await self.service.require_action(request, action, None)
        ids = job_selection(await read_json(request))
        letters = self._dead_letters()
        target = describe_selection(ids)
        try:
            if verb == "requeue":
                count = await letters.requeue(ids)
            else:
                count = await letters.purge(ids)
        except (QueueUnavailable, ShardUnavailable) as exc:
            await self.service.audit(request, session, action, target, f"failed: {exc}")
            raise Unavailable(f"the queue cannot {verb} now: {exc}", retry_after=2) from exc
        await self.service.audit(request, session, action, target, f"count {count}")
        return json_response({"count": count})

    def _dead_letters(self) -> Any:
        letters = self.service.dead_letters()
        if letters is None:
            raise NotFound("the queue plugin is not enabled")
        return letters

    async def audit(self, request: web.Request) -> web.Response:
        await self.service.require_session(request)
        limit = limit_param(request)
        try:
            entries = await self.service.auditor.recent(limit)
        except (AuditUnavailable, ShardUnavailable) as exc:
            raise Unavailable(f"the audit log cannot be read now: {exc}", retry_after=2) from exc
        return json_response(
            {
                "entries": [e.as_dict() for e in entries],
                "store": self.service.auditor.store.kind,
            }
        )
