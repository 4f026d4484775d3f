"""What schemathesis generates for the headers Keel documents (`SCHEMATHESIS_HOOKS`).

- `entity-tags` (If-Match, If-None-Match): `*` or a list of entity tags. For a
  header with a pattern, schemathesis's coverage phase otherwise narrows
  values to letters and digits, which no entity tag is (`"3"`).
- Idempotency-Key: a key is one client request's own, so every call with a
  well-formed key gets a fresh one. Generated values repeat (Hypothesis
  shrinks a body while keeping the header), and the server rightly answers a
  key reused for a different body with 422 — a reply to the server's state, not
  to the request's shape; tests/queue/test_jobs_api.py tests it. A malformed
  key (negative data) is sent as generated.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import schemathesis
from hypothesis import strategies as st

from app.items.model import ETAG_LIST_PATTERN
from app.queue.submission import IDEMPOTENCY_KEY_PATTERN

schemathesis.openapi.format(
    "entity-tags", st.from_regex(f"^{ETAG_LIST_PATTERN}$", fullmatch=True).map(str.strip)
)

_KEY = re.compile(IDEMPOTENCY_KEY_PATTERN)


@schemathesis.hook
def before_call(ctx: Any, case: Any, **kwargs: Any) -> None:
    key = (case.headers or {}).get("Idempotency-Key")
    if isinstance(key, str) and _KEY.fullmatch(key):
        case.headers["Idempotency-Key"] = str(uuid.uuid4())
