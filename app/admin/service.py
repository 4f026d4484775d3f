"""Everything the dashboard's handlers use, in one object (`app[ADMIN]`).

Sessions and who is asking: `session_of(request)` reads the session cookie;
`require_session` answers 401 without a live one; `require_action` adds the
CSRF check (403 `csrf`) and the role check (403 `forbidden` for a viewer), and
audits a refused action as well as a performed one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from app.admin.audit import Auditor
from app.admin.board import Board
from app.admin.login_limit import LoginLimiter
from app.admin.push import Push
from app.admin.security import CSRF_FIELD, CSRF_HEADER, SESSION_COOKIE, Tokens, check_csrf
from app.admin.sessions import Session, SessionStore
from app.admin.settings import AdminSettings
from app.breakers import BreakerRegistry
from app.core.client_address import CLIENT_ADDRESS, ClientAddressResolver
from app.core.lifecycle import Lifecycle
from app.errors import CsrfRejected, Forbidden, Unauthorized
from app.queue.dead_letters import DeadLetters


@dataclass
class AdminService:
    settings: AdminSettings
    tokens: Tokens
    sessions: SessionStore
    login_limit: LoginLimiter
    auditor: Auditor
    board: Board
    push: Push
    lifecycle: Lifecycle
    addresses: ClientAddressResolver
    # Other plugins' services, looked up when used (None when not enabled).
    breakers: Callable[[], BreakerRegistry | None]
    dead_letters: Callable[[], DeadLetters | None]

    async def session_of(self, request: web.Request) -> Session | None:
        session_id = request.cookies.get(SESSION_COOKIE)
        if not session_id:
            return None
        return await self.sessions.get(session_id)

    async def require_session(self, request: web.Request) -> Session:
        session = await self.session_of(request)
        if session is None:
            raise Unauthorized(
                "log in first: no session, or it ended", details={"login": "/admin/login"}
            )
        return session

    async def require_csrf(
        self,
        request: web.Request,
        session: Session,
        action: str,
        form: Any = None,
        target: str | None = None,
    ) -> None:
        """403 `csrf` (audited) unless the request carries the session's CSRF token."""
        presented = request.headers.get(CSRF_HEADER)
        if presented is None and form is not None:
            value = form.get(CSRF_FIELD)
            presented = value if isinstance(value, str) else None
        try:
            check_csrf(session, presented)
        except CsrfRejected as exc:
            await self.audit(request, session, action, target, f"refused: {exc.code}")
            raise

    async def require_action(
        self, request: web.Request, action: str, target: str | None
    ) -> Session:
        """The operator session allowed to perform `action`; refusals are audited."""
        session = await self.require_session(request)
        await self.require_csrf(request, session, action, target=target)
        if session.role != "operator":
            refusal = Forbidden(f"a {session.role} session may not {action}: log in as an operator")
            await self.audit(request, session, action, target, f"refused: {refusal.code}")
            raise refusal
        return session

    async def audit(
        self,
        request: web.Request,
        session: Session | None,
        action: str,
        target: str | None,
        result: str,
        *,
        role: str | None = None,
    ) -> None:
        await self.auditor.record(
            action=action,
            client=request[CLIENT_ADDRESS],
            result=result,
            role=session.role if session is not None else role,
            session=session.short_id if session is not None else None,
            target=target,
        )


ADMIN = web.AppKey("keel.admin", AdminService)
