"""A turn's event stream in Redis (one stream per turn id).

The LLM activity appends ``message.delta`` events while the model streams; the
API's SSE endpoint reads them and forwards them, and a client that reconnects
resumes after the last event id it saw. Entry ids are Redis stream ids, so
they are unique and ordered; the stream expires ``ttl_s`` after its last write.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
import structlog
from redis.exceptions import RedisError

from core.names import turn_stream_key

log = structlog.get_logger(__name__)

TERMINAL_EVENTS = frozenset({"turn.completed", "error"})
#: Events after which a live relay stops: the turn waits for a human (resume later with Last-Event-ID).
PAUSE_EVENTS = frozenset({"approval.required"})
_EXPIRY_EVENTS = TERMINAL_EVENTS | {"turn.started", "message.reset"}


@dataclass(frozen=True)
class TurnEvent:
    id: str
    event: str
    data: dict[str, Any]

    @property
    def terminal(self) -> bool:
        return self.event in TERMINAL_EVENTS

    @property
    def pauses(self) -> bool:
        return self.event in PAUSE_EVENTS


class TurnEventStream:
    def __init__(self, redis: aioredis.Redis, *, ttl_s: int) -> None:
        self._redis = redis
        self._ttl_s = ttl_s
        self._down = False

    async def publish(self, turn_id: str, event: str, data: dict[str, Any]) -> str:
        """Append an event. The stream's expiry is set by the first and the terminal events
        (a turn streams for minutes at most; its stream lives ``ttl_s`` after it ends)."""
        key = turn_stream_key(turn_id)
        fields = {"event": event, "data": json.dumps(data, separators=(",", ":"))}
        if event not in _EXPIRY_EVENTS:
            return str(await self._redis.xadd(key, fields))  # type: ignore[arg-type]
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.xadd(key, fields)  # type: ignore[arg-type]
            pipe.expire(key, self._ttl_s)
            entry_id, _ = await pipe.execute()
        return str(entry_id)

    async def publish_delta(self, turn_id: str, event: str, data: dict[str, Any]) -> bool:
        """Append a streamed piece (``message.delta``) if Redis takes it; False when it does
        not. A delta is a preview: the finished turn carries the whole text, so an outage of
        Redis costs the live stream its pieces, never the turn (and never counts against
        the model's circuit). Logged once per outage (``turn_events.unavailable``)."""
        try:
            await self.publish(turn_id, event, data)
        except (RedisError, OSError) as err:
            if not self._down:
                log.warning("turn_events.unavailable", turn_id=turn_id, error=type(err).__name__)
            self._down = True
            return False
        if self._down:
            log.info("turn_events.restored", turn_id=turn_id)
        self._down = False
        return True

    async def read(
        self, turn_id: str, *, after: str = "0-0", block_ms: int | None = None, count: int = 500
    ) -> list[TurnEvent]:
        """Events after ``after`` (exclusive); blocks up to ``block_ms`` when none are there yet."""
        reply: Any = await self._redis.xread({turn_stream_key(turn_id): after}, count=count, block=block_ms)
        # RESP3 answers a mapping {stream: entries}; RESP2 a list of [stream, entries].
        streams = list(reply.values()) if isinstance(reply, dict) else [e for _k, e in reply or []]
        events: list[TurnEvent] = []
        for entries in streams:
            for entry_id, fields in entries:
                events.append(
                    TurnEvent(id=str(entry_id), event=fields["event"], data=json.loads(fields["data"]))
                )
        return events

    async def exists(self, turn_id: str) -> bool:
        return bool(await self._redis.exists(turn_stream_key(turn_id)))
