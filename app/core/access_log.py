"""One access-log line per request, after the response is sent.

aiohttp calls the logger itself, outside the middleware chain, so logging costs
the request nothing before its response is written. The line carries the
request id and the client address resolved through trusted proxies.
"""

from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from app.core.client_address import CLIENT_ADDRESSES
from app.core.request_id import REQUEST_ID

ACCESS_LOGGER = logging.getLogger("keel.access")


class AccessLogger(AbstractAccessLogger):
    """`client "METHOD path" status bytes duration_ms`, with structured fields for JSON."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        resolver = request.app.get(CLIENT_ADDRESSES) if isinstance(request, web.Request) else None
        client = resolver(request) if resolver else (request.remote or "-")
        duration_ms = round(time * 1000, 2)
        self.logger.info(
            '%s "%s %s" %s %s %sms',
            client,
            request.method,
            request.path_qs,
            response.status,
            response.body_length,
            duration_ms,
            extra={
                "request_id": request.get(REQUEST_ID, "-"),
                "fields": {
                    "client": client,
                    "method": request.method,
                    "path": request.path_qs,
                    "status": response.status,
                    "bytes": response.body_length,
                    "duration_ms": duration_ms,
                    "user_agent": request.headers.get("User-Agent", ""),
                },
            },
        )

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)
