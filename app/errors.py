"""Keel's exceptions and the JSON error shape every client sees.

Hierarchy::

    KeelError                      base of everything Keel raises on purpose
    ├── StartupError               refused before a port is bound (exit status 2)
    │   ├── ConfigError            bad config: one problem per key path
    │   └── PluginError            bad plugin set: unknown, duplicate, missing requirement, cycle
    ├── TeardownError              a plugin's teardown failed (the others still ran)
    ├── DependencyDown             a dependency holding what a request needs cannot answer
    │                              (a shard): answered as 503 unavailable wherever raised
    └── HTTPError                  a client-facing error: status, code, message, details
        ├── BadRequest             400 bad_request
        ├── BadJSON                400 bad_json
        ├── Unauthorized           401 unauthorized (no session, wrong token)
        ├── Forbidden              403 forbidden (a viewer asking for an action)
        ├── CsrfRejected           403 csrf (a POST without its session's CSRF token)
        ├── NotFound               404 not_found
        ├── PreconditionFailed     412 precondition_failed
        ├── TooLarge               413 too_large
        ├── UnsupportedMediaType   415 unsupported_media_type
        ├── Invalid                422 invalid (details: one entry per field)
        ├── RateLimited            429 rate_limited (Retry-After)
        ├── Unavailable            503 unavailable (Retry-After)
        ├── CircuitOpen            503 circuit_open (Retry-After)
        ├── BadGateway             502 bad_gateway
        └── UpstreamTimeout        504 upstream_timeout

`response_for` (called by the request middleware, app/core/request_context.py)
turns an `HTTPError`, a `DependencyDown`, any aiohttp `HTTPException` and any unexpected
exception into `{"error": {"code", "message", "details"}}`; an
unexpected one is logged with its traceback and answered as 500 `internal`
without leaking anything about it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, ClassVar

from aiohttp import web

from app.core.json_codec import json_response

log = logging.getLogger("keel.errors")


class KeelError(Exception):
    """Base of every exception Keel raises on purpose."""


class StartupError(KeelError):
    """Startup refused before a port is bound; `problems` holds one line each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class ConfigError(StartupError):
    """The configuration is invalid; each problem names its key path."""


class PluginError(StartupError):
    """The plugin set cannot be loaded; each problem says how to fix it."""


class TeardownError(KeelError):
    """A plugin's teardown failed; aiohttp still runs the others and collects every error."""


class DependencyDown(KeelError):
    """A dependency cannot answer now (`ShardUnavailable` is one). Raised deep in library
    code, it reaches a client as 503 `unavailable` with `Retry-After` and `details`
    naming the dependency — but not `reason`, which is for logs and `/readyz`."""

    def __init__(
        self, name: str, reason: str, *, retry_after: float, details: dict[str, Any]
    ) -> None:
        super().__init__(f"{name} is unavailable: {reason}")
        self.name = name
        self.reason = reason
        self.retry_after = retry_after
        self.details = details


class HTTPError(KeelError):
    """An error a client receives as JSON with `status` and `code`."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal"

    def __init__(
        self,
        message: str,
        *,
        details: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        self.headers = dict(headers or {})


class BadRequest(HTTPError):
    status, code = 400, "bad_request"


class BadJSON(HTTPError):
    status, code = 400, "bad_json"


class Unauthorized(HTTPError):
    status, code = 401, "unauthorized"


class Forbidden(HTTPError):
    status, code = 403, "forbidden"


class CsrfRejected(HTTPError):
    status, code = 403, "csrf"


class NotFound(HTTPError):
    status, code = 404, "not_found"


class PreconditionFailed(HTTPError):
    status, code = 412, "precondition_failed"


class TooLarge(HTTPError):
    status, code = 413, "too_large"


class UnsupportedMediaType(HTTPError):
    status, code = 415, "unsupported_media_type"


class Invalid(HTTPError):
    status, code = 422, "invalid"


class _RetryLater(HTTPError):
    """An error that tells the client when to come back (`Retry-After`, whole seconds)."""

    def __init__(self, message: str, *, retry_after: float, details: Any = None) -> None:
        seconds = max(1, round(retry_after + 0.4999))  # round up: never invite an early retry
        super().__init__(message, details=details, headers={"Retry-After": str(seconds)})
        self.retry_after = seconds


class RateLimited(_RetryLater):
    status, code = 429, "rate_limited"


class Unavailable(_RetryLater):
    status, code = 503, "unavailable"


class CircuitOpen(_RetryLater):
    status, code = 503, "circuit_open"


class BadGateway(HTTPError):
    status, code = 502, "bad_gateway"


class UpstreamTimeout(HTTPError):
    status, code = 504, "upstream_timeout"


# aiohttp's own exceptions (router misses, body limits, ...) mapped to our codes.
_CODES_BY_STATUS: dict[int, str] = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    408: "request_timeout",
    409: "conflict",
    411: "length_required",
    412: "precondition_failed",
    413: "too_large",
    414: "uri_too_long",
    415: "unsupported_media_type",
    422: "invalid",
    429: "rate_limited",
    431: "headers_too_large",
    500: "internal",
    501: "not_implemented",
    502: "bad_gateway",
    503: "unavailable",
    504: "upstream_timeout",
}

_KEPT_HEADERS = ("Allow", "Retry-After", "WWW-Authenticate", "Location")


def error_response(
    status: int,
    code: str,
    message: str,
    details: Any = None,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    """The one JSON error shape of DESIGN.md."""
    body = {"error": {"code": code, "message": message, "details": details}}
    return json_response(body, status=status, headers=headers)


def _from_http_exception(exc: web.HTTPException) -> web.Response:
    headers = {name: exc.headers[name] for name in _KEPT_HEADERS if name in exc.headers}
    code = _CODES_BY_STATUS.get(exc.status, "error" if exc.status < 500 else "internal")
    return error_response(exc.status, code, exc.reason, headers=headers)


def response_for(exc: Exception, request: web.BaseRequest) -> web.Response:
    """The JSON error answering `exc`, raised by `request`'s handler; never a traceback.

    Call it from the `except` block that caught `exc` (an unexpected error is
    logged with its traceback). Redirects and 2xx raised as exceptions are not
    errors: they are re-raised unchanged.
    """
    if isinstance(exc, HTTPError):
        return error_response(exc.status, exc.code, exc.message, exc.details, exc.headers)
    if isinstance(exc, DependencyDown):
        answer = Unavailable(
            f"{exc.name} is unavailable; try again shortly",
            retry_after=exc.retry_after,
            details=exc.details,
        )
        return error_response(
            answer.status, answer.code, answer.message, answer.details, answer.headers
        )
    if isinstance(exc, web.HTTPException):
        if exc.status < 400:
            raise exc
        return _from_http_exception(exc)
    log.exception("unhandled error in %s %s", request.method, request.path)
    return error_response(500, "internal", "Internal server error.")
