"""Audit trail activities: retention purges and export to the configured sinks.

* ``purge_expired`` deletes one batch of rows older than their event's retention,
  inside a transaction that sets ``keel.audit_retention`` (the only writer that
  does): the database trigger refuses any other delete and leaves a tombstone
  per purged row, tagged with the purge run.
* ``record_purge`` counts the run's tombstones and records ``audit.purged`` once
  per run (deduplicated on the run id, so a retry or a continued run is exact).
* ``export_batch`` sends the rows after a sink's cursor, then moves the cursor:
  at least once, a failed send is retried by Temporal and resent.
"""

from __future__ import annotations

import structlog
from temporalio import activity
from temporalio.exceptions import ApplicationError

from core.errors import ErrorCode
from core.models.audit import AuditEntry, AuditEvent
from core.models.audit_jobs import (
    AuditRetentionResult,
    ExportBatchInput,
    ExportBatchResult,
    PurgeBatchInput,
    RecordPurgeInput,
)
from infra.audit.chain import format_time
from infra.audit.log import AuditLog
from infra.audit.sinks import AuditSink
from infra.db.audit_repo import AuditRepository

log = structlog.get_logger(__name__)


class AuditActivities:
    def __init__(self, *, audit: AuditLog, repo: AuditRepository, sinks: dict[str, AuditSink]) -> None:
        self._audit = audit
        self._repo = repo
        self._sinks = sinks

    @activity.defn
    async def purge_expired(self, inp: PurgeBatchInput) -> int:
        deleted = await self._repo.purge_batch(
            as_of=inp.as_of,
            default_days=inp.default_days,
            days_by_event=inp.days_by_event,
            batch_size=inp.batch_size,
            run_id=inp.purge_run,
        )
        if deleted:
            log.info("audit.purge_batch", deleted=deleted, purge_run=inp.purge_run)
        return deleted

    @activity.defn
    async def record_purge(self, inp: RecordPurgeInput) -> AuditRetentionResult:
        by_event = await self._repo.purged_by_event(inp.purge_run)
        purged = sum(by_event.values())
        await self._audit.record(
            AuditEntry(
                event=AuditEvent.AUDIT_PURGED,
                resource_type="audit_trail",
                details={
                    "purged": purged,
                    "by_event": by_event,
                    "as_of": format_time(inp.as_of),
                    "default_days": inp.default_days,
                    "days_by_event": inp.days_by_event,
                    "purge_run": inp.purge_run,
                },
                dedupe_key=f"audit.purged:{inp.purge_run}",
            )
        )
        return AuditRetentionResult(purged=purged, by_event=by_event)

    @activity.defn
    async def export_batch(self, inp: ExportBatchInput) -> ExportBatchResult:
        sink = self._sinks.get(inp.sink)
        if sink is None:
            raise ApplicationError(
                f"the audit sink '{inp.sink}' is not configured on this worker",
                type=ErrorCode.INVALID_REQUEST,
                non_retryable=True,
            )
        start = await self._repo.export_cursor(inp.sink)
        records = await self._repo.after(start, limit=inp.batch_size)
        if not records:
            return ExportBatchResult(sent=0, last_seq=start)
        await sink.send(records)
        last = records[-1].seq
        if not await self._repo.advance_export_cursor(inp.sink, from_seq=start, to_seq=last):
            # Another export moved the cursor meanwhile: these rows went twice (at least once).
            log.warning("audit.export_cursor_moved", sink=inp.sink, from_seq=start)
        log.info("audit.exported_batch", sink=inp.sink, rows=len(records), last_seq=last)
        return ExportBatchResult(sent=len(records), last_seq=last)
