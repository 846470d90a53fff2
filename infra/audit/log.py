"""The audit writer: ``AuditLog.record(entry)``.

TEMPORARY interface stub (being replaced by the hash-chained Postgres writer):
it only writes the JSON log line.
"""

from __future__ import annotations

import asyncpg
import structlog

from core.models.audit import AuditEntry

log = structlog.get_logger("keel.audit")


class AuditLog:
    def __init__(self, pool: asyncpg.Pool, *, hmac_key: bytes) -> None:
        self._pool = pool
        self._hmac_key = hmac_key

    async def record(self, entry: AuditEntry) -> None:
        ctx = structlog.contextvars.get_contextvars()
        log.info(
            "audit",
            audit_event=entry.event.value,
            user_id=entry.user_id,
            session_id=entry.session_id,
            trace_id=entry.trace_id or ctx.get("trace_id"),
            outcome=entry.outcome,
        )
