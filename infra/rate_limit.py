"""Per-user rate limits and the global concurrency guard, both in Redis so every
API replica shares them.

* ``RateLimiter``: a sliding-window log (one sorted set per user, scored by the
  Redis server's clock). A Lua script trims, counts and admits atomically, so a
  burst from one user gets exactly ``limit`` requests through per window, on any
  number of replicas.
* ``ConcurrencyGuard``: a leased semaphore (a sorted set of in-flight request
  ids scored by lease expiry). A replica that dies leaks nothing for longer than
  the lease.

When Redis cannot be reached the outcome is ``KEEL_RATE_LIMIT_FAIL_MODE``:
``open`` admits the request (and counts it in ``keel_rate_limit_unavailable_total``),
``closed`` refuses it with 503.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from typing import Literal

import redis.asyncio as aioredis
import structlog
from prometheus_client import Counter
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

log = structlog.get_logger(__name__)

FailMode = Literal["open", "closed"]

RATE_LIMITED = Counter("keel_rate_limited_total", "Requests refused by the per-user rate limit")
OVERLOADED = Counter("keel_overloaded_total", "Requests refused by the global concurrency guard")
UNAVAILABLE = Counter(
    "keel_rate_limit_unavailable_total",
    "Requests decided without Redis (by the fail mode)",
    ["fail_mode"],
)

# KEYS[1]: the user's window; ARGV: window_ms, limit, member. Returns {admitted, remaining, retry_ms}.
_SLIDING_WINDOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local count = redis.call('ZCARD', KEYS[1])
if count < limit then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], window)
  return {1, limit - count - 1, 0}
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {0, 0, tonumber(oldest[2]) + window - now}
"""

# KEYS[1]: the in-flight set; ARGV: lease_ms, limit, member. Returns 1 when admitted.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[1]), ARGV[3])
  return 1
end
return 0
"""

_REDIS_DOWN = (RedisConnectionError, RedisTimeoutError, OSError)


@dataclass(frozen=True)
class Decision:
    allowed: bool
    retry_after_s: int = 0
    remaining: int | None = None
    #: False when Redis could not be asked and the fail mode decided.
    checked: bool = True


class RateLimiter:
    def __init__(
        self, redis: aioredis.Redis, *, per_minute: int, fail_mode: FailMode, window_s: int = 60
    ) -> None:
        self._redis = redis
        self._limit = per_minute
        self._window_ms = window_s * 1000
        self._fail_mode = fail_mode
        self._script = redis.register_script(_SLIDING_WINDOW)

    @property
    def limit(self) -> int:
        return self._limit

    async def hit(self, user_id: str) -> Decision:
        # The sorted-set member is ours (random), never the client's request id: a member the
        # client chooses would let a constant X-Request-ID overwrite one entry and make every
        # request free.
        try:
            admitted, remaining, retry_ms = await self._script(
                keys=[f"keel:ratelimit:{user_id}"], args=[self._window_ms, self._limit, uuid.uuid4().hex]
            )
        except _REDIS_DOWN as err:
            return _without_redis(self._fail_mode, "rate_limit", err)
        if int(admitted):
            return Decision(allowed=True, remaining=int(remaining))
        RATE_LIMITED.inc()
        return Decision(allowed=False, retry_after_s=max(1, math.ceil(int(retry_ms) / 1000)), remaining=0)


class ConcurrencyGuard:
    _KEY = "keel:inflight"

    def __init__(self, redis: aioredis.Redis, *, limit: int, lease_s: float, fail_mode: FailMode) -> None:
        self._redis = redis
        self._limit = limit
        self._lease_ms = int(lease_s * 1000)
        self._fail_mode = fail_mode
        self._script = redis.register_script(_ACQUIRE)

    async def acquire(self, request_id: str) -> Decision:
        try:
            admitted = await self._script(keys=[self._KEY], args=[self._lease_ms, self._limit, request_id])
        except _REDIS_DOWN as err:
            return _without_redis(self._fail_mode, "concurrency", err)
        if int(admitted):
            return Decision(allowed=True)
        OVERLOADED.inc()
        return Decision(allowed=False, retry_after_s=1)

    async def release(self, request_id: str) -> None:
        try:
            await self._redis.zrem(self._KEY, request_id)
        except _REDIS_DOWN:
            log.warning("concurrency.release_failed", request_id=request_id)


def _without_redis(fail_mode: FailMode, what: str, err: BaseException) -> Decision:
    UNAVAILABLE.labels(fail_mode=fail_mode).inc()
    log.warning("ratelimit.redis_unavailable", check=what, fail_mode=fail_mode, error=type(err).__name__)
    if fail_mode == "open":
        return Decision(allowed=True, checked=False)
    return Decision(allowed=False, retry_after_s=5, checked=False)
