"""Job status changes as an in-process event hook: `app[JOB_EVENTS]`.

Every status change this instance records is emitted after the record is
written: a job accepted (`queued`), started (`running`), finished
(`succeeded`), failed with a retry to come (`failed`), given up on or
poisoned (`dead`), returned to the queue at shutdown or requeued from the
dead queue (`queued` again). Subscribers get a `JobEvent`:

    JobEvent.status   "queued" | "running" | "succeeded" | "failed" | "dead"
    JobEvent.job      the job exactly as GET /api/jobs/{id} shows it now:
                      {"id", "task", "status", "attempts", "result", "error",
                       "created_at", "updated_at"}

`JobEvent.message()` is the shape the WebSocket `jobs` channel will carry:
`{"event": <status>, "job": {…}}` (like the `items` channel's
`{"event": "created", "item": {…}}`). Events are local to the instance that
recorded the change — a job accepted by one instance and run by another
emits `queued` on the first and the rest on the second; fanning them out
across instances is the WebSocket plugin's job (Redis pub/sub). Delivery is
at least once like the jobs themselves: a redelivered job can emit `running`
twice.

    app[JOB_EVENTS].subscribe(on_job)   # async def on_job(event: JobEvent) -> None
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiohttp import web

from app.core.events import EventHook


@dataclass(frozen=True)
class JobEvent:
    job: dict[str, Any]

    @property
    def status(self) -> str:
        return str(self.job["status"])

    def message(self) -> dict[str, Any]:
        return {"event": self.status, "job": self.job}


JOB_EVENTS: web.AppKey[EventHook[JobEvent]] = web.AppKey("keel.queue.events")
