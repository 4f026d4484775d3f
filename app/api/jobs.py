"""`/api/jobs`: submit a job (202, `Location`; `Idempotency-Key`) and read its status.

The routes are added by the queue plugin in the `serve` role.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from app.api.items import shard_errors
from app.api.json_body import read_json
from app.core.json_codec import json_response
from app.core.openapi import error_response, json_content
from app.errors import Invalid, NotFound
from app.items.model import ID_PATTERN
from app.queue.records import STATUSES
from app.queue.service import QUEUE
from app.queue.submission import MAX_ATTEMPTS, MAX_DELAY, Rejected, idempotency_key, validate


async def submit_job(request: web.Request) -> web.Response:
    queue = request.app[QUEUE]
    try:
        key = idempotency_key(request.headers.get("Idempotency-Key"))
        body = await read_json(request)
        job_request = validate(body, queue.tasks, queue.settings.max_attempts)
        with shard_errors():
            submission = await queue.submit(job_request, key)
    except Rejected as exc:
        raise Invalid("the job is not valid", details=exc.problems) from None
    job = submission.job
    response = json_response(job.public(), status=202)
    response.headers["Location"] = f"/api/jobs/{job.id}"
    if not submission.created:
        response.headers["Idempotent-Replayed"] = "true"
    return response


async def get_job(request: web.Request) -> web.Response:
    job_id = request.match_info["id"]
    if not ID_PATTERN.fullmatch(job_id):
        raise Invalid(
            "invalid job id",
            details=[{"field": "id", "message": "expected 1..128 characters of [A-Za-z0-9._:-]"}],
        )
    with shard_errors():
        job = await request.app[QUEUE].get(job_id)
    if job is None:
        raise NotFound(f"no job {job_id}")
    return json_response(job.public())


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/jobs", submit_job, name="jobs.submit")
    app.router.add_get("/api/jobs/{id}", get_job, name="jobs.get")


_JOB = {"$ref": "#/components/schemas/Job"}
JOB_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["id", "task", "status", "attempts", "result", "error", "created_at", "updated_at"],
    "properties": {
        "id": {"type": "string"},
        "task": {"type": "string"},
        "status": {"enum": list(STATUSES)},
        "attempts": {"type": "integer", "minimum": 0, "description": "Attempts started"},
        "result": {"description": "What the task returned (null until it succeeds)"},
        "error": {"type": ["string", "null"], "description": "The last failure"},
        "created_at": {"type": "string", "format": "date-time"},
        "updated_at": {"type": "string", "format": "date-time"},
    },
}
_JOB_INPUT = {
    "type": "object",
    "required": ["task"],
    "additionalProperties": False,
    "properties": {
        "task": {"type": "string", "description": "A registered task, e.g. demo.echo"},
        "args": {"type": "object", "description": "The task's arguments (checked by the task)"},
        "delay": {
            "type": "number",
            "minimum": 0,
            "maximum": MAX_DELAY,
            "description": "Seconds before the first attempt",
        },
        "max_attempts": {"type": "integer", "minimum": 1, "maximum": MAX_ATTEMPTS},
    },
}
_UNAVAILABLE = error_response("The shard that holds the job is unavailable (Retry-After)")

OPENAPI_PATHS: dict[str, Any] = {
    "/api/jobs": {
        "post": {
            "operationId": "submitJob",
            "tags": ["jobs"],
            "summary": "Accept a job: it will run at least once",
            "parameters": [
                {
                    "name": "Idempotency-Key",
                    "in": "header",
                    "schema": {"type": "string", "minLength": 1, "maxLength": 257},
                    "description": "The same key within 24 hours returns the same job",
                }
            ],
            "requestBody": {"required": True, "content": json_content(_JOB_INPUT)},
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
        "parameters": [
            {
                "name": "id",
                "in": "path",
                "required": True,
                "schema": {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,128}$"},
            }
        ],
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
