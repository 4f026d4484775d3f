"""The admin sub-application mounted at /admin, and the `GET /` redirect.

A sub-application of its own so that its `on_response_prepare` (the
security headers) runs for /admin responses only: the API's responses pay
nothing for the dashboard.
"""

from __future__ import annotations

from pathlib import Path

import aiohttp_jinja2
import jinja2
from aiohttp import web

from app.admin.api import Api
from app.admin.pages import Pages
from app.admin.security import add_security_headers
from app.admin.service import AdminService
from app.admin.static_files import StaticFiles

TEMPLATES_DIR = Path(__file__).resolve().parent.parent.parent / "templates"


def add_routes(app: web.Application, service: AdminService) -> list[str]:
    """Add the routes; the names of the static files served."""
    pages = Pages(service)
    api = Api(service)
    static = StaticFiles()
    admin = web.Application()
    aiohttp_jinja2.setup(
        admin,
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        autoescape=jinja2.select_autoescape(["html"]),
    )
    admin.on_response_prepare.append(add_security_headers)
    admin.router.add_get("", pages.dashboard, name="dashboard")
    admin.router.add_get("/login", pages.login_form, name="login_form")
    admin.router.add_post("/login", pages.login, name="login")
    admin.router.add_post("/logout", pages.logout, name="logout")
    admin.router.add_get("/static/{name}", static.handle, name="static")
    admin.router.add_get("/ws", api.websocket, name="ws", allow_head=False)
    admin.router.add_get("/api/state", api.state, name="state")
    admin.router.add_post(
        "/api/breakers/{name}/{action}", api.breaker_action, name="breaker_action"
    )
    admin.router.add_get("/api/jobs/dead", api.dead_jobs, name="dead_jobs")
    admin.router.add_post("/api/jobs/dead/requeue", api.requeue_dead, name="requeue_dead")
    admin.router.add_post("/api/jobs/dead/purge", api.purge_dead, name="purge_dead")
    admin.router.add_get("/api/audit", api.audit, name="audit")
    app.add_subapp("/admin", admin)
    app.router.add_get("/", pages.root, name="root")
    return sorted(static.files)
