"""Rate limiting: limits, the GCRA arithmetic, its memory and Redis backends, policies.

The `ratelimit` plugin (`app/plugins/ratelimit.py`) wires these into a
middleware. Everything here except `redis_limiter` is IO-free.
"""

from app.ratelimit.limiter import RATELIMITER, RateLimiter
from app.ratelimit.settings import RatelimitSettings

__all__ = ["RATELIMITER", "RateLimiter", "RatelimitSettings"]
