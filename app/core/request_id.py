"""`X-Request-ID`: echo a sane incoming id, else make one; expose it to logs.

A sane id is 1..128 characters of `[A-Za-z0-9._:-]`; anything else is replaced
so that ids stay safe to log and to pass on to upstreams.
"""

from __future__ import annotations

import contextvars
import itertools
import os
import re
from collections.abc import Callable

from aiohttp import web

HEADER = "X-Request-ID"
_SANE = re.compile(r"[A-Za-z0-9._:-]{1,128}")

REQUEST_ID = web.RequestKey("keel.request_id", str)
# Read by the log formatter, so every line logged while handling a request carries its id.
current_request_id: contextvars.ContextVar[str] = contextvars.ContextVar(
    "keel_request_id", default="-"
)


def choose_request_id(incoming: str | None, make_new: Callable[[], str]) -> str:
    if incoming and _SANE.fullmatch(incoming):
        return incoming
    return make_new()


class RequestIds:
    """Makes request ids and applies them; one per application.

    A random prefix plus a counter is unique across instances and restarts
    without a getrandom() syscall per request (ids need not be secret).
    """

    def __init__(self) -> None:
        self._prefix = os.urandom(6).hex()
        self._counter = itertools.count(1)

    def new(self) -> str:
        return f"{self._prefix}{next(self._counter):010x}"

    def assign(self, request: web.Request) -> None:
        """Give `request` its id before anything else runs, so every log line carries it."""
        request_id = choose_request_id(request.headers.get(HEADER), self.new)
        request[REQUEST_ID] = request_id
        current_request_id.set(request_id)


def add_request_id_header(request: web.Request, response: web.StreamResponse) -> None:
    """As every response is prepared, streamed and WebSocket ones included (called by the
    groundwork's hook: app/core/request_context.py)."""
    request_id = request.get(REQUEST_ID)
    if request_id is not None:
        response.headers[HEADER] = request_id
