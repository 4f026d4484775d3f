"""The groundwork of every request, in one middleware: id, client address, tracking, errors.

These four run on every request, first and in this order, and each used to be
a middleware of its own; one layer instead of three keeps the per-request
cost (a call and a resumption per layer) where it pays for something.

- the request id (`X-Request-ID`), set before anything else so that every log
  line carries it (app/core/request_id.py);
- the client address, resolved once through the trusted proxies
  (app/core/client_address.py) and read by limits, logs and the dashboard;
- in-flight tracking for the drain report (app/core/lifecycle.py);
- every exception mapped to the JSON error shape (app/errors.py);
- the request's outcome told to the `REQUEST_OBSERVERS` (the metrics plugin):
  its final status — the error response's, for an exception; 499 when the
  client went away — and how long it took. An observer is a plain call, not
  a middleware layer of its own.

And of every response, in one `on_response_prepare` hook (`response_groundwork`),
for the responses the middleware never sees as they are prepared (streamed,
WebSocket, aiohttp's own): the `X-Request-ID` header, and `Connection: close`
while the instance drains (app/core/draining.py).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from app.core.client_address import CLIENT_ADDRESS, ClientAddressResolver
from app.core.draining import close_if_draining
from app.core.lifecycle import Lifecycle
from app.core.request_id import RequestIds, add_request_id_header
from app.errors import response_for

# The status of a request whose client went away before its answer (nginx's convention).
CLIENT_GONE = 499

# Called with the request, its status and its duration in seconds, once it is over.
RequestObserver = Callable[[web.Request, int, float], None]
REQUEST_OBSERVERS = web.AppKey("keel.request_observers", list[RequestObserver])


def request_middleware(
    ids: RequestIds,
    addresses: ClientAddressResolver,
    lifecycle: Lifecycle,
    observers: list[RequestObserver],
) -> Middleware:
    in_flight = lifecycle.in_flight
    clock = time.perf_counter

    @web.middleware
    async def groundwork(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = clock()
        ids.assign(request)
        request[CLIENT_ADDRESS] = addresses(request)
        key = id(request)
        in_flight[key] = f"{request.method} {request.path}"
        status = 500  # for a BaseException that is neither an error nor a cancellation
        try:
            try:
                response = await handler(request)
            except ConnectionResetError as exc:
                if not _client_gone(request):
                    response = response_for(exc, request)  # a dependency's, not the client's
                else:
                    # The client went away while sending its body: no one to answer, nothing
                    # broken here. Logged as nginx would (499), without a traceback.
                    response = web.Response(status=CLIENT_GONE)
            except Exception as exc:  # noqa: BLE001 - every error gets the JSON shape, never a 500 page
                response = response_for(exc, request)
            status = response.status
            return response
        except asyncio.CancelledError:
            status = CLIENT_GONE
            lifecycle.cancelled(key)
            raise
        finally:
            in_flight.pop(key, None)  # gone already if the request was untracked
            for observe in observers:
                observe(request, status, clock() - started)

    return groundwork


def _client_gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


ResponseHook = Callable[[web.Request, web.StreamResponse], Awaitable[None]]


def response_groundwork(lifecycle: Lifecycle) -> ResponseHook:
    """The `on_response_prepare` hook of every response (one hook: each costs a call)."""

    async def prepare(request: web.Request, response: web.StreamResponse) -> None:
        add_request_id_header(request, response)
        close_if_draining(lifecycle, response)

    return prepare
