"""The admin plugin's part of the OpenAPI document: the dashboard's pages and its API."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

from app.core.openapi import error_response, json_content

_SESSION: list[dict[str, list[str]]] = [{"adminSession": []}]
_CSRF = {
    "name": "X-CSRF-Token",
    "in": "header",
    "required": True,
    "schema": {"type": "string"},
    "description": "The session's CSRF token (the page's `<meta name=\"csrf-token\">`)",
}
_LIMIT = {
    "name": "limit",
    "in": "query",
    "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100},
}
_NO_SESSION = error_response("No session (log in at /admin/login)")
_REFUSED = error_response("`csrf`: no or wrong CSRF token; `forbidden`: a viewer session")
_HTML = {"text/html": {"schema": {"type": "string"}}}
_REDIRECT = {"description": "See Other", "headers": {"Location": {"schema": {"type": "string"}}}}

_INSTANCE = {
    "type": "object",
    "required": ["id", "version", "pid", "host", "started_at", "uptime", "ready", "plugins"],
    "properties": {
        "id": {"type": "string"},
        "version": {"type": "string"},
        "pid": {"type": "integer"},
        "host": {"type": "string"},
        "role": {"enum": ["serve", "worker"]},
        "started_at": {"type": "number", "description": "epoch seconds"},
        "uptime": {"type": "number", "description": "seconds"},
        "phase": {"enum": ["starting", "running", "draining", "stopped"]},
        "ready": {"type": "boolean"},
        "status": {"type": "string", "description": "as /readyz says"},
        "in_flight": {"type": "integer"},
        "plugins": {"type": "object", "description": "each plugin's state(), secrets masked"},
        "degraded": {"type": "array", "items": {"type": "object"}},
        "series": {
            "type": "object",
            "description": "per-route points: `t` (epoch seconds) and, per route, `rate`,"
            " `errors` (5xx), `p50`, `p99` (ms) arrays aligned with `t`",
        },
        "last_seen": {"type": "number"},
        "stale": {"type": "boolean", "description": "stopped reporting"},
    },
}
_STATE = {
    "type": "object",
    "required": ["generated_at", "instances", "degraded"],
    "properties": {
        "generated_at": {"type": "number"},
        "instance": {"type": "string", "description": "the instance that answered"},
        "instances": {"type": "array", "items": {"$ref": "#/components/schemas/AdminInstance"}},
        "degraded": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "detail": {"type": "string"},
                    "since": {"type": "number"},
                    "instances": {"type": "array", "items": {"type": "string"}},
                },
            },
        },
        "fleet": {"type": "object"},
    },
}
_IDS = {"type": "array", "items": {"type": "string"}}
_SELECTION = {
    "oneOf": [
        {"type": "object", "required": ["ids"], "properties": {"ids": _IDS}},
        {"type": "object", "required": ["all"], "properties": {"all": {"const": True}}},
    ]
}
_COUNT = {"type": "object", "properties": {"count": {"type": "integer"}}}


def _dead_action(verb: str, summary: str) -> dict[str, Any]:
    return {
        "post": {
            "operationId": f"{verb}DeadJobs",
            "tags": ["admin"],
            "summary": summary,
            "security": _SESSION,
            "parameters": [_CSRF],
            "requestBody": {"required": True, "content": json_content(_SELECTION)},
            "responses": {
                "200": {"description": "How many", "content": json_content(_COUNT)},
                "400": error_response("Malformed JSON"),
                "401": _NO_SESSION,
                "403": _REFUSED,
                "404": error_response("The queue plugin is not enabled"),
                "415": error_response("Not JSON"),
                "422": error_response("Neither `ids` nor `all`, or both"),
                "503": error_response("The queue is unreachable"),
            },
        }
    }


OPENAPI_PATHS: dict[str, Any] = {
    "/": {
        "get": {
            "operationId": "root",
            "tags": ["admin"],
            "summary": "Redirects to the dashboard",
            "responses": {"303": _REDIRECT},
        }
    },
    "/admin": {
        "get": {
            "operationId": "adminDashboard",
            "tags": ["admin"],
            "summary": "The dashboard page; 303 to /admin/login without a session",
            "responses": {"200": {"description": "HTML", "content": _HTML}, "303": _REDIRECT},
        }
    },
    "/admin/login": {
        "get": {
            "operationId": "adminLoginForm",
            "tags": ["admin"],
            "summary": "The login form",
            "responses": {"200": {"description": "HTML", "content": _HTML}},
        },
        "post": {
            "operationId": "adminLogin",
            "tags": ["admin"],
            "summary": "Log in with the operator or viewer token; a new session",
            "requestBody": {
                "required": True,
                "content": {
                    "application/x-www-form-urlencoded": {
                        "schema": {
                            "type": "object",
                            "required": ["token", "csrf_token"],
                            "properties": {
                                "token": {"type": "string"},
                                "csrf_token": {"type": "string"},
                            },
                        }
                    }
                },
            },
            "responses": {
                "303": _REDIRECT,
                "400": error_response("A form that cannot be read"),
                "401": error_response("Wrong token"),
                "403": error_response("`csrf`: the form's CSRF field is missing or wrong"),
                "415": error_response("Not a form"),
                "429": error_response("Too many failed logins (`Retry-After`)"),
            },
        },
    },
    "/admin/logout": {
        "post": {
            "operationId": "adminLogout",
            "tags": ["admin"],
            "summary": "End the session (everywhere)",
            "security": _SESSION,
            "description": "The CSRF token as the form field `csrf_token` or the header.",
            "requestBody": {
                "required": False,
                "content": {
                    "application/x-www-form-urlencoded": {
                        "schema": {
                            "type": "object",
                            "properties": {"csrf_token": {"type": "string"}},
                        }
                    }
                },
            },
            "responses": {
                "303": _REDIRECT,
                "400": error_response("A form that cannot be read"),
                "401": _NO_SESSION,
                "403": error_response("`csrf`: no or wrong CSRF token"),
                "415": error_response("Not a form"),
            },
        }
    },
    "/admin/static/{name}": {
        "get": {
            "operationId": "adminStatic",
            "tags": ["admin"],
            "summary": "The dashboard's JavaScript and CSS",
            "parameters": [
                {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
            ],
            "responses": {
                "200": {"description": "The file"},
                "404": error_response("No such file"),
            },
        }
    },
    "/admin/ws": {
        "get": {
            "operationId": "adminWebSocket",
            "tags": ["admin"],
            "summary": 'Pushes {"op": "state", "data": <as /admin/api/state>} every push_interval',
            "security": _SESSION,
            "responses": {
                "101": {"description": "Switching protocols"},
                "400": error_response("Not a WebSocket handshake"),
                "401": _NO_SESSION,
                "403": error_response("Cross-origin handshake"),
                "503": error_response("Shutting down"),
            },
        }
    },
    "/admin/api/state": {
        "get": {
            "operationId": "adminState",
            "tags": ["admin"],
            "summary": "Every live instance's state (this one only without Redis)",
            "security": _SESSION,
            "responses": {
                "200": {"description": "The state", "content": json_content(_STATE)},
                "401": _NO_SESSION,
            },
        }
    },
    "/admin/api/breakers/{name}/{action}": {
        "post": {
            "operationId": "adminBreakerAction",
            "tags": ["admin"],
            "summary": "Reset, force open or disable a breaker on every instance",
            "security": _SESSION,
            "parameters": [
                {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}},
                {
                    "name": "action",
                    "in": "path",
                    "required": True,
                    "schema": {"enum": ["reset", "force_open", "disable"]},
                },
                _CSRF,
            ],
            "responses": {
                "200": {
                    "description": "Which instances applied it",
                    "content": json_content(
                        {
                            "type": "object",
                            "properties": {"applied": _IDS, "missing": _IDS, "unknown": _IDS},
                        }
                    ),
                },
                "401": _NO_SESSION,
                "403": _REFUSED,
                "404": error_response("Unknown action, or the breakers plugin is not enabled"),
            },
        }
    },
    "/admin/api/jobs/dead": {
        "get": {
            "operationId": "adminDeadJobs",
            "tags": ["admin"],
            "summary": "Dead jobs, newest first",
            "security": _SESSION,
            "parameters": [_LIMIT],
            "responses": {
                "200": {
                    "description": "Dead jobs and the dead queue's size",
                    "content": json_content(
                        {
                            "type": "object",
                            "properties": {
                                "jobs": {"type": "array", "items": {"type": "object"}},
                                "dead": {"type": ["integer", "null"]},
                            },
                        }
                    ),
                },
                "401": _NO_SESSION,
                "404": error_response("The queue plugin is not enabled"),
                "422": error_response("Bad limit"),
                "503": error_response("The queue is unreachable"),
            },
        }
    },
    "/admin/api/jobs/dead/requeue": _dead_action("requeue", "Requeue dead jobs (paced)"),
    "/admin/api/jobs/dead/purge": _dead_action("purge", "Drop dead jobs from the dead queue"),
    "/admin/api/audit": {
        "get": {
            "operationId": "adminAudit",
            "tags": ["admin"],
            "summary": "The audit log, newest first",
            "security": _SESSION,
            "parameters": [_LIMIT],
            "responses": {
                "200": {
                    "description": "Entries: at, role, session, client, action, target, result",
                    "content": json_content(
                        {
                            "type": "object",
                            "properties": {
                                "entries": {"type": "array"},
                                "store": {"type": "string"},
                            },
                        }
                    ),
                },
                "401": _NO_SESSION,
                "422": error_response("Bad limit"),
                "503": error_response("The audit log is unreachable"),
            },
        }
    },
}

OPENAPI_SCHEMAS: dict[str, Any] = {"AdminInstance": _INSTANCE}

SECURITY_SCHEMES: dict[str, Any] = {
    "adminSession": {
        "type": "apiKey",
        "in": "cookie",
        "name": "keel_admin_session",
        "description": "The dashboard's session, from POST /admin/login",
    }
}


def paths(static_files: Sequence[str]) -> dict[str, Any]:
    """The admin paths, with the names of the static files this instance serves."""
    document = copy.deepcopy(OPENAPI_PATHS)
    (parameter,) = document["/admin/static/{name}"]["get"]["parameters"]
    parameter["schema"] = {"enum": sorted(static_files)}
    return document
