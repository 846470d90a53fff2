"""AuditExportWorkflow (Temporal Schedule ``keel-audit-export``): send the audit rows
after each sink's cursor to that sink, batch by batch, until it is caught up (or
``max_batches`` were sent; the next scheduled run goes on from the cursor).
"""

from __future__ import annotations

from temporalio import workflow

from workflows import activity_presets

with workflow.unsafe.imports_passed_through():
    from core.models.audit_jobs import AuditExportInput, AuditExportResult, ExportBatchInput
    from workflows.activity_defs import AuditActivities


@workflow.defn
class AuditExportWorkflow:
    @workflow.run
    async def run(self, inp: AuditExportInput) -> AuditExportResult:
        sent: dict[str, int] = {}
        for sink in inp.sinks:
            sent[sink] = 0
            for _ in range(inp.max_batches):
                batch = await workflow.execute_activity_method(
                    AuditActivities.export_batch,
                    ExportBatchInput(sink=sink, batch_size=inp.batch_size),
                    **activity_presets.AUDIT_BATCH,
                )
                sent[sink] += batch.sent
                if batch.sent < inp.batch_size:
                    break
        return AuditExportResult(sent=sent)
