"""The groundwork of every request, in one middleware: id, client address, tracking, errors.

These four run on every request, first and in this order, and each used to be
a middleware of its own; one layer instead of three keeps the per-request
cost (a call and a resumption per layer) where it pays for something.

- the request id (`X-Request-ID`), set before anything else so that every log
  line carries it (app/request_id.py);
- the client address, resolved once through the trusted proxies
  (app/client_address.py) and read by limits, logs and the dashboard;
- in-flight tracking for the drain report (app/lifecycle.py);
- every exception mapped to the JSON error shape (app/errors.py).
"""

from __future__ import annotations

import asyncio

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from app.client_address import CLIENT_ADDRESS, ClientAddressResolver
from app.errors import response_for
from app.lifecycle import Lifecycle
from app.request_id import RequestIds


def request_middleware(
    ids: RequestIds, addresses: ClientAddressResolver, lifecycle: Lifecycle
) -> Middleware:
    in_flight = lifecycle.in_flight

    @web.middleware
    async def groundwork(request: web.Request, handler: Handler) -> web.StreamResponse:
        ids.assign(request)
        request[CLIENT_ADDRESS] = addresses(request)
        key = id(request)
        in_flight[key] = f"{request.method} {request.path}"
        try:
            return await handler(request)
        except asyncio.CancelledError:
            lifecycle.cancelled(key)
            raise
        except Exception as exc:  # noqa: BLE001 - every error gets the JSON shape, never a 500 page
            return response_for(exc, request)
        finally:
            in_flight.pop(key, None)  # gone already if the request was untracked

    return groundwork
