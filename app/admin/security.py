"""What keeps the dashboard safe: token checks, cookies, CSRF and the security headers.

- Tokens are compared in constant time, as SHA-256 digests (so neither the
  content nor the length of a token shows in the timing).
- The session cookie is `HttpOnly`, `SameSite=Strict`, `Path=/admin`, and
  `Secure` when the request came over HTTPS (the socket's scheme, or a trusted
  proxy's `X-Forwarded-Proto`).
- Every POST carries its session's CSRF token (form field `csrf_token` or
  header `X-CSRF-Token`). The login form has no session yet: it is protected
  by a signed double-submit token — a random nonce in a short-lived cookie and
  its HMAC in the form, keyed by a secret derived from the configured tokens,
  so any instance with the same config can check a form another one served.
- Every `/admin` response gets the headers of `SECURITY_HEADERS`.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping

from aiohttp import web

from app.admin.sessions import Role, Session
from app.core.client_address import ClientAddressResolver
from app.errors import CsrfRejected

SESSION_COOKIE = "keel_admin_session"
LOGIN_COOKIE = "keel_admin_login"
COOKIE_PATH = "/admin"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
LOGIN_FORM_SECONDS = 3600  # how long a served login form stays valid

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)

SECURITY_HEADERS: Mapping[str, str] = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",  # for browsers that predate frame-ancestors
}


async def add_security_headers(request: web.BaseRequest, response: web.StreamResponse) -> None:
    """`on_response_prepare` of the admin sub-application: every /admin response."""
    response.headers.update(SECURITY_HEADERS)


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


class Tokens:
    """The operator and viewer tokens, and which role a presented token grants."""

    def __init__(self, operator: str, viewer: str = "") -> None:
        if not operator:
            raise ValueError("the operator token must not be empty")
        self._operator = _digest(operator)
        self._viewer = _digest(viewer) if viewer else None
        # The login form's signing key: the same on every instance with this config.
        self._form_key = hashlib.sha256(
            b"keel admin login form\0" + operator.encode() + b"\0" + viewer.encode()
        ).digest()

    def role_for(self, presented: str) -> Role | None:
        """The role `presented` logs in as, or None. Constant time in the token."""
        given = _digest(presented)
        operator = hmac.compare_digest(given, self._operator)
        viewer = self._viewer is not None and hmac.compare_digest(given, self._viewer)
        if operator:
            return "operator"
        return "viewer" if viewer else None

    def form_token(self, nonce: str) -> str:
        """The login form's CSRF field for the nonce in its cookie."""
        return hmac.new(self._form_key, nonce.encode(), hashlib.sha256).hexdigest()

    def form_token_valid(self, nonce: str | None, field: str | None) -> bool:
        if not nonce or not field:
            return False
        return hmac.compare_digest(self.form_token(nonce).encode(), field.encode())


def new_login_nonce() -> str:
    return secrets.token_urlsafe(24)


def is_https(request: web.BaseRequest, addresses: ClientAddressResolver) -> bool:
    """Did the client use HTTPS? A proxy's `X-Forwarded-Proto` counts only from a trusted peer."""
    if request.secure:
        return True
    forwarded = request.headers.get("X-Forwarded-Proto")
    if forwarded is None or not addresses.is_trusted(request.remote or ""):
        return False
    # A chain of proxies appends: the last one is the proxy that talked to us.
    return forwarded.split(",")[-1].strip().lower() == "https"


def set_cookie(
    response: web.StreamResponse, name: str, value: str, max_age: int, secure: bool
) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=COOKIE_PATH,
        httponly=True,
        samesite="Strict",
        secure=secure,
    )


def clear_cookie(response: web.StreamResponse, name: str, secure: bool) -> None:
    set_cookie(response, name, "", 0, secure)


def check_csrf(session: Session, presented: str | None) -> None:
    """Raise `CsrfRejected` unless `presented` is the session's CSRF token."""
    if not presented or not hmac.compare_digest(presented.encode(), session.csrf.encode()):
        raise CsrfRejected(
            "this request needs the session's CSRF token (form field csrf_token or header"
            " X-CSRF-Token): reload the page"
        )
