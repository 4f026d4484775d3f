"""The `admin` plugin: the operator's dashboard at /admin (see app/admin/).

Wiring only: settings, the session store and audit log for this deployment
(Redis / shards when enabled), the per-route series as a request observer,
the once-a-second reporting, the push to open pages, and the routes. Other
plugins are read only through their AppKeys and their `state()`.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import sys
from collections.abc import AsyncIterator, Sequence
from typing import Any

from aiohttp import web

from app.admin import openapi as admin_openapi
from app.admin.audit import (
    AuditLog,
    Auditor,
    MemoryAuditLog,
    RedisAuditLog,
    ShardAuditLog,
)
from app.admin.board import Board
from app.admin.fleet import Fleet
from app.admin.login_limit import LoginLimiter
from app.admin.openapi import OPENAPI_SCHEMAS, SECURITY_SCHEMES
from app.admin.push import Push
from app.admin.redact import Redactor, secret_values
from app.admin.reporting import Reporting
from app.admin.routes import add_routes
from app.admin.security import Tokens
from app.admin.series import RouteSeries
from app.admin.service import ADMIN, AdminService
from app.admin.sessions import MemorySessionStore, RedisSessionStore, SessionStore
from app.admin.settings import AdminSettings
from app.admin.snapshot import InstanceReporter, Reports
from app.breakers import BREAKERS
from app.config import Config
from app.core.background import background
from app.core.client_address import CLIENT_ADDRESSES
from app.core.lifecycle import LIFECYCLE
from app.core.periodic import periodic
from app.core.request_context import REQUEST_OBSERVERS
from app.plugins import PLUGINS, BasePlugin, SettingsOf
from app.queue import DEAD_LETTERS
from app.redis import REDIS, RedisService
from app.sharding import SHARDS

log = logging.getLogger("keel.admin")

AUDIT_TRIM_INTERVAL = 60.0  # seconds between deletions of audit entries beyond the cap

__all__ = ["ADMIN", "AdminPlugin"]


class AdminPlugin(BasePlugin):
    name = "admin"
    # Set up last: it shows every other plugin's state.
    optional = (
        "metrics",
        "redis",
        "breakers",
        "sharding",
        "cache",
        "ratelimit",
        "upstreams",
        "websocket",
        "queue",
        "demo",
    )
    settings = SettingsOf(AdminSettings)

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        token = self.settings.token.reveal()
        self.generated_token = "" if token else secrets.token_urlsafe(24)
        self.tokens = Tokens(token or self.generated_token, self.settings.viewer_token.reveal())
        self.redactor = Redactor(secret_values(config))
        if self.generated_token:
            self.redactor.add(self.generated_token)

    def setup(self, app: web.Application) -> None:
        lifecycle = app[LIFECYCLE]
        redis = app.get(REDIS)
        shared = redis if redis is not None and redis.enabled else None
        self.series = RouteSeries()
        app[REQUEST_OBSERVERS].append(self.series.observe)
        self.fleet = Fleet(shared, lifecycle.instance.id)

        def plugins() -> Sequence[Reports]:
            enabled = app[PLUGINS]  # read when a snapshot is built: every plugin is set up
            return enabled

        reporter = InstanceReporter(lifecycle, plugins, self.redactor)
        self.reporter = reporter
        self.board = Board(reporter, self.series, self.fleet)
        self.reporting = Reporting(self.board, self.series, self.fleet)
        sessions = self._sessions(shared)
        self.audit_log = self._audit_log(app, shared)
        self.push = Push(self.board, sessions, lifecycle, self.settings.push_seconds)
        self.service = app[ADMIN] = AdminService(
            settings=self.settings,
            tokens=self.tokens,
            sessions=sessions,
            login_limit=LoginLimiter(self.settings.login_limit_parsed, shared),
            auditor=Auditor(self.audit_log, lifecycle.instance.id),
            board=self.board,
            push=self.push,
            lifecycle=lifecycle,
            addresses=app[CLIENT_ADDRESSES],
            breakers=lambda: app.get(BREAKERS),
            dead_letters=lambda: app.get(DEAD_LETTERS),
        )
        self.static_files: list[str] = []
        if lifecycle.role == "serve":
            self.static_files = add_routes(app, self.service)

    def _sessions(self, redis: RedisService | None) -> SessionStore:
        ttl = self.settings.session_ttl
        return RedisSessionStore(redis, ttl) if redis is not None else MemorySessionStore(ttl)

    def _audit_log(self, app: web.Application, redis: RedisService | None) -> AuditLog:
        keep = self.settings.audit_entries
        shards = app.get(SHARDS)
        if shards is not None:
            return ShardAuditLog(shards, keep)
        if redis is not None:
            return RedisAuditLog(redis, keep)
        return MemoryAuditLog(keep)

    async def drain(self, app: web.Application) -> None:
        """Close every open dashboard with 1001 (they reconnect to another instance)."""
        await self.push.close_all()

    @contextlib.asynccontextmanager
    async def lifespan(self, app: web.Application) -> AsyncIterator[None]:
        serving = app[LIFECYCLE].role == "serve"
        if serving and self.generated_token:
            # Printed, not logged: once, on stderr, for the person who ran `make run`.
            print(
                f"admin: no [admin] token is set; this run's operator token is"
                f" {self.generated_token}  (log in at /admin)",
                file=sys.stderr,
                flush=True,
            )
        if self.audit_log.kind == "memory":
            log.warning(
                "admin: the audit log is kept in memory only (enable sharding or set [redis] url"
                " to keep it across restarts)"
            )
        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(background("keel.admin.reporting", self.reporting.run))
            if serving:
                await stack.enter_async_context(background("keel.admin.push", self.push.run))
            await stack.enter_async_context(
                periodic("keel.admin.audit_trim", lambda: AUDIT_TRIM_INTERVAL, self._trim_audit)
            )
            try:
                yield
            finally:
                await self.fleet.leave()

    async def _trim_audit(self) -> None:
        deleted = await self.audit_log.trim()
        if deleted:
            log.info("admin: deleted %d audit entries beyond [admin] audit_entries", deleted)

    def openapi_paths(self) -> dict[str, Any]:
        return admin_openapi.paths(self.static_files)

    def openapi_schemas(self) -> dict[str, Any]:
        return OPENAPI_SCHEMAS

    def amend_openapi(self, document: dict[str, Any]) -> None:
        """The session cookie that `security: adminSession` refers to."""
        document["components"]["securitySchemes"] = {
            **document["components"].get("securitySchemes", {}),
            **SECURITY_SCHEMES,
        }

    def state(self) -> dict[str, Any]:
        return {
            "sessions": self.service.sessions.kind,
            "audit_log": self.audit_log.kind,
            "fleet": "redis" if self.fleet.shared else "local",
            "viewers": len(self.push.viewers),
            "pushes": self.push.pushes,
            "push_interval": self.settings.push_seconds,
            "viewer_role": bool(self.settings.viewer_token),
            **self.reporter.cost.as_dict(),
        }
