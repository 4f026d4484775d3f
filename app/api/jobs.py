"""`/api/jobs`: submit a job (202, `Location`; `Idempotency-Key`) and read its status.

The routes are added by the queue plugin in the `serve` role.
"""

from __future__ import annotations

from aiohttp import web

from app.api.json_body import read_json
from app.api.path_id import path_id
from app.core.json_codec import json_response
from app.errors import Invalid, NotFound
from app.queue.service import QUEUE
from app.queue.submission import Rejected, idempotency_key


async def submit_job(request: web.Request) -> web.Response:
    queue = request.app[QUEUE]
    try:
        key = idempotency_key(request.headers.get("Idempotency-Key"))
        body = await read_json(request)
        job_request = queue.body.request(body, queue.settings.max_attempts)
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
    job_id = path_id(request, "job")
    job = await request.app[QUEUE].get(job_id)
    if job is None:
        raise NotFound(f"no job {job_id}")
    return json_response(job.public())


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/jobs", submit_job, name="jobs.submit")
    app.router.add_get("/api/jobs/{id}", get_job, name="jobs.get")
