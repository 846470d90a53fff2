"""AuditRetentionWorkflow (Temporal Schedule ``keel-audit-retention``): purge audit
rows older than their event's retention, in batches, then record ``audit.purged``.

The cut-off is fixed when the first run starts (``workflow.now()``) and carried
through continue-as-new with the purge run id, so the counts of ``audit.purged``
cover the whole purge exactly once.
"""

from __future__ import annotations

from temporalio import workflow

from workflows import activity_presets

with workflow.unsafe.imports_passed_through():
    from core.models.audit_jobs import (
        AuditRetentionInput,
        AuditRetentionResult,
        PurgeBatchInput,
        RecordPurgeInput,
    )
    from workflows.activity_defs import AuditActivities


@workflow.defn
class AuditRetentionWorkflow:
    @workflow.run
    async def run(self, inp: AuditRetentionInput) -> AuditRetentionResult:
        as_of = inp.as_of or workflow.now()
        purge_run = inp.purge_run or workflow.info().run_id
        while True:
            deleted = await workflow.execute_activity_method(
                AuditActivities.purge_expired,
                PurgeBatchInput(
                    as_of=as_of,
                    default_days=inp.default_days,
                    days_by_event=inp.days_by_event,
                    batch_size=inp.batch_size,
                    purge_run=purge_run,
                ),
                **activity_presets.AUDIT_BATCH,
            )
            if deleted < inp.batch_size:
                break
            if workflow.info().is_continue_as_new_suggested():
                workflow.continue_as_new(inp.model_copy(update={"as_of": as_of, "purge_run": purge_run}))
        return await workflow.execute_activity_method(
            AuditActivities.record_purge,
            RecordPurgeInput(
                as_of=as_of,
                default_days=inp.default_days,
                days_by_event=inp.days_by_event,
                purge_run=purge_run,
            ),
            **activity_presets.DATABASE,
        )
