"""The dashboard's pages: `/` and `/admin` (redirects), the login form, logout, the page.

Failures of the login form answer with the form again (HTML, with the error
and the status: 401 wrong token, 403 `csrf`, 429 with `Retry-After`) to a
browser, and with the JSON error shape to any other client.
"""

from __future__ import annotations

import math
from typing import Any

import aiohttp_jinja2
from aiohttp import web
from aiohttp.web_request import FileField
from multidict import MultiDict, MultiDictProxy

from app.admin.security import (
    CSRF_FIELD,
    LOGIN_COOKIE,
    LOGIN_FORM_SECONDS,
    SESSION_COOKIE,
    clear_cookie,
    is_https,
    new_login_nonce,
    set_cookie,
)
from app.admin.service import AdminService
from app.core.client_address import CLIENT_ADDRESS
from app.errors import BadRequest, UnsupportedMediaType, error_response

LOGIN_PATH = "/admin/login"
PAGE_PATH = "/admin"


FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


async def read_form(request: web.Request) -> MultiDictProxy[str | bytes | bytearray | FileField]:
    """The posted form: 415 for a body that is not a form, 400 for one that cannot be read."""
    if not request.body_exists:
        return MultiDictProxy(MultiDict())
    if request.content_type not in FORM_TYPES:
        raise UnsupportedMediaType(
            f'expected a form ("application/x-www-form-urlencoded"), got "{request.content_type}"'
        )
    try:
        return await request.post()
    except ValueError as exc:  # a multipart body without a boundary, bytes that are not UTF-8
        raise BadRequest(f"the form cannot be read: {exc}") from None


def see_other(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


def wants_html(request: web.Request) -> bool:
    return "text/html" in request.headers.get("Accept", "")


class Pages:
    def __init__(self, service: AdminService) -> None:
        self.service = service

    async def root(self, request: web.Request) -> web.Response:
        return see_other(PAGE_PATH)

    async def dashboard(self, request: web.Request) -> web.StreamResponse:
        session = await self.service.session_of(request)
        if session is None:
            return see_other(LOGIN_PATH)
        instance = self.service.lifecycle.instance
        return aiohttp_jinja2.render_template(
            "admin/dashboard.html",
            request,
            {
                "csrf": session.csrf,
                "role": session.role,
                "instance": instance.id,
                "version": instance.version,
                "push_interval": self.service.settings.push_seconds,
            },
        )

    def _login_form(
        self, request: web.Request, *, error: str = "", status: int = 200
    ) -> web.Response:
        nonce = new_login_nonce()
        response = aiohttp_jinja2.render_template(
            "admin/login.html",
            request,
            {
                "csrf_field": CSRF_FIELD,
                "csrf": self.service.tokens.form_token(nonce),
                "error": error,
                "viewer_enabled": bool(self.service.settings.viewer_token),
            },
            status=status,
        )
        secure = is_https(request, self.service.addresses)
        set_cookie(response, LOGIN_COOKIE, nonce, LOGIN_FORM_SECONDS, secure)
        return response

    async def login_form(self, request: web.Request) -> web.Response:
        return self._login_form(request)

    def _refused(
        self, request: web.Request, status: int, code: str, message: str, **headers: str
    ) -> web.Response:
        if wants_html(request):
            response = self._login_form(request, error=message, status=status)
            response.headers.update(headers)
            return response
        return error_response(status, code, message, headers=headers or None)

    async def login(self, request: web.Request) -> web.Response:
        service = self.service
        form = await read_form(request)
        client = request[CLIENT_ADDRESS]
        if not service.tokens.form_token_valid(
            request.cookies.get(LOGIN_COOKIE), _text(form.get(CSRF_FIELD))
        ):
            await service.audit(request, None, "login", None, "refused: csrf")
            return self._refused(
                request,
                403,
                "csrf",
                "This login form has expired or was not served here: log in again.",
            )
        decision = await service.login_limit.attempt(client)
        if not decision.allowed:
            retry = max(1, math.ceil(decision.reset_us / 1_000_000))
            await service.audit(request, None, "login", None, "refused: rate_limited")
            return self._refused(
                request,
                429,
                "rate_limited",
                f"Too many failed logins from {client}: try again in {retry} s.",
                **{"Retry-After": str(retry)},
            )
        role = service.tokens.role_for(_text(form.get("token")) or "")
        if role is None:
            await service.audit(request, None, "login", None, "refused: wrong token")
            return self._refused(request, 401, "unauthorized", "Wrong token.")
        old = request.cookies.get(SESSION_COOKIE)
        if old:
            await service.sessions.delete(old)  # never carry a session across a login
        session = await service.sessions.create(role)
        await service.login_limit.succeeded(client)
        await service.audit(request, session, "login", None, "ok")
        response = see_other(PAGE_PATH)
        secure = is_https(request, service.addresses)
        set_cookie(response, SESSION_COOKIE, session.id, service.settings.session_ttl, secure)
        clear_cookie(response, LOGIN_COOKIE, secure)
        return response

    async def logout(self, request: web.Request) -> web.Response:
        service = self.service
        session = await service.require_session(request)
        form = await read_form(request)
        await service.require_csrf(request, session, "logout", form)
        await service.sessions.delete(session.id)
        await service.audit(request, session, "logout", None, "ok")
        response = see_other(LOGIN_PATH)
        clear_cookie(response, SESSION_COOKIE, is_https(request, service.addresses))
        return response


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None
