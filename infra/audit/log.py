"""The audit writer: ``AuditLog.record(entry)``.

Each entry becomes one row of the hash-chained ``audit_events`` table (see
:mod:`infra.db.audit_repo` and :mod:`infra.audit.chain`) and one JSON log line
on the ``keel.audit`` logger carrying the event, user id, session id and trace
id (the trace id comes from the entry, else the current span (tracing on: in an
activity too), else the structlog context the API binds per request; the request
id from the entry, else that context). An entry whose ``dedupe_key`` was recorded before is
written nowhere (an activity retry records its event once). A failed write
raises: an action that cannot be audited is not reported as done.
"""

from __future__ import annotations

from typing import Any

import asyncpg
import structlog

from core.models.audit import AuditEntry
from infra.audit.chain import ChainVerifier, VerifyResult, normalise_details
from infra.db.audit_repo import AuditRecord, AuditRepository
from infra.tracing import current_trace_id

log = structlog.get_logger("keel.audit")


def _text(value: Any) -> str | None:
    return None if value is None else str(value).replace("\x00", "")


class AuditLog:
    def __init__(self, pool: asyncpg.Pool, *, hmac_key: bytes) -> None:
        self._pool = pool
        self._hmac_key = hmac_key
        self._repo = AuditRepository(pool)

    @property
    def repository(self) -> AuditRepository:
        return self._repo

    async def verify(self) -> VerifyResult:
        """Walk the whole chain (rows and retention tombstones, in ``seq`` order) up to the
        head with this log's key: ``keel audit verify`` and ``GET /admin/audit/verify``."""
        repo = self._repo
        verifier = ChainVerifier(key=self._hmac_key)
        head = await repo.head()
        async for row, tombstone in repo.chain(up_to=head.last_seq):
            verifier.add(row, tombstone=tombstone)
            if verifier.failed:
                break
        return verifier.finish(
            head_seq=head.last_seq, head_hash=head.last_hash, beyond_head=await repo.first_beyond_head()
        )

    async def record(self, entry: AuditEntry) -> None:
        await self.append(entry)

    async def append(self, entry: AuditEntry) -> AuditRecord | None:
        """:meth:`record`, returning the stored row (``None`` when deduplicated)."""
        ctx = structlog.contextvars.get_contextvars()
        fields: dict[str, Any] = {
            "event": entry.event.value,
            "user_id": _text(entry.user_id),
            "session_id": _text(entry.session_id),
            "trace_id": _text(entry.trace_id or current_trace_id() or ctx.get("trace_id")),
            "request_id": _text(entry.request_id or ctx.get("request_id")),
            "outcome": entry.outcome,
            "resource_type": _text(entry.resource_type),
            "resource_id": _text(entry.resource_id),
            "details": normalise_details(entry.details),
            "dedupe_key": _text(entry.dedupe_key),
        }
        stored = await self._repo.append(fields, hmac_key=self._hmac_key)
        if stored is None:
            log.debug("audit.deduplicated", audit_event=entry.event.value, dedupe_key=entry.dedupe_key)
            return None
        log.info(
            "audit",
            audit_event=stored.event,
            audit_seq=stored.seq,
            user_id=stored.user_id,
            session_id=stored.session_id,
            trace_id=stored.trace_id,
            request_id=stored.request_id,
            outcome=stored.outcome,
            resource_type=stored.resource_type,
            resource_id=stored.resource_id,
        )
        return stored
