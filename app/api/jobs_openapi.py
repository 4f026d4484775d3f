"""The OpenAPI entries of `/api/jobs` (app/api/jobs.py)."""

from __future__ import annotations

from typing import Any

from app.api.path_id import ID_SCHEMA
from app.core.openapi import error_response, json_content
from app.queue.records import STATUSES
from app.queue.submission import IDEMPOTENCY_KEY_PATTERN, JobBody
from app.queue.tasks import TaskRegistry

_JOB = {"$ref": "#/components/schemas/Job"}
JOB_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["id", "task", "status", "attempts", "result", "error", "created_at", "updated_at"],
    "properties": {
        "id": {"type": "string"},
        "task": {"type": "string"},
        "status": {
            "enum": list(STATUSES),
            "description": "running: an attempt has been under way for over 0.1 s (a quicker"
            " one goes from queued straight to its outcome); failed: will retry",
        },
        "attempts": {"type": "integer", "minimum": 0, "description": "Attempts started"},
        "result": {"description": "What the task returned (null until it succeeds)"},
        "error": {"type": ["string", "null"], "description": "The last failure"},
        "created_at": {"type": "string", "format": "date-time"},
        "updated_at": {"type": "string", "format": "date-time"},
    },
}
_UNAVAILABLE = error_response("The shard that holds the job is unavailable (Retry-After)")


def paths(tasks: TaskRegistry) -> dict[str, Any]:
    """The entries for the tasks registered now (the body names them, with their args)."""
    return {
        "/api/jobs": {
            "post": {
                "operationId": "submitJob",
                "tags": ["jobs"],
                "summary": "Accept a job: it will run at least once",
                "parameters": [
                    {
                        "name": "Idempotency-Key",
                        "in": "header",
                        "schema": {"type": "string", "pattern": f"^({IDEMPOTENCY_KEY_PATTERN})$"},
                        "description": "The same key within 24 hours returns the same job",
                    }
                ],
                "requestBody": {
                    "required": True,
                    "content": json_content(JobBody(tasks).json_schema()),
                },
                "responses": {
                    "202": {
                        "description": "Accepted (durably recorded); Location names the job",
                        "headers": {
                            "Location": {"schema": {"type": "string"}},
                            "Idempotent-Replayed": {
                                "schema": {"const": "true"},
                                "description": "The Idempotency-Key named an earlier job",
                            },
                        },
                        "content": json_content(_JOB),
                        "links": {
                            "getJob": {
                                "operationId": "getJob",
                                "parameters": {"id": "$response.body#/id"},
                            }
                        },
                    },
                    "400": error_response("Malformed JSON"),
                    "413": error_response("Body too large"),
                    "415": error_response("Not JSON"),
                    "422": error_response(
                        "Unknown task, bad args, delay or max_attempts, or an Idempotency-Key"
                        " reused for a different request: details lists each problem"
                    ),
                    "503": _UNAVAILABLE,
                },
            }
        },
        "/api/jobs/{id}": {
            "parameters": [{"name": "id", "in": "path", "required": True, "schema": ID_SCHEMA}],
            "get": {
                "operationId": "getJob",
                "tags": ["jobs"],
                "responses": {
                    "200": {"description": "The job", "content": json_content(_JOB)},
                    "404": error_response("No such job"),
                    "422": error_response("Invalid id"),
                    "503": _UNAVAILABLE,
                },
            },
        },
    }
