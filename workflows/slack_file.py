"""SlackFileWorkflow: a file shared with the bot in a DM becomes a document of that
person's personal knowledge base, ingested by the same ``IngestDocumentWorkflow`` as an
upload (a child here, so the Temporal UI shows one under the other); the bot then says
in the file's thread when it is ready, or why it failed."""

from __future__ import annotations

from temporalio import workflow
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import ActivityError, ApplicationError, ChildWorkflowError

from workflows import activity_presets, search_attributes
from workflows.ingest_document import IngestDocumentWorkflow

with workflow.unsafe.imports_passed_through():
    from core.models.ingest import IngestDocumentInput
    from core.models.slack import SlackFileImport, SlackFileShare, SlackReply
    from core.names import ingest_workflow_id
    from workflows.activity_defs import SlackFileActivities


def _message(err: ActivityError | ChildWorkflowError, default: str) -> str:
    cause = err.cause
    return cause.message if isinstance(cause, ApplicationError) else default


@workflow.defn
class SlackFileWorkflow:
    @workflow.run
    async def run(self, share: SlackFileShare) -> str:
        status: str
        try:
            imp = await workflow.execute_activity_method(
                SlackFileActivities.import_file, share, **activity_presets.SLACK_DOWNLOAD
            )
        except ActivityError as err:
            imp = SlackFileImport(
                status="refused",
                notice=f"❌ I could not fetch this file: {_message(err, 'the download failed')}.",
            )
        status, text = imp.status, imp.notice or ""
        if imp.status == "ingesting":
            workflow.upsert_search_attributes(
                search_attributes.updates_for_kind(user_id=imp.user_id, kind="slack")
            )
            try:
                result = await workflow.execute_child_workflow(
                    IngestDocumentWorkflow.run,
                    IngestDocumentInput(document_id=imp.document_id, version=imp.version),
                    id=ingest_workflow_id(imp.document_id),
                    task_queue=share.ingest_task_queue,
                    id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
                    search_attributes=search_attributes.for_kind(user_id=imp.user_id, kind="ingest"),
                )
                status = result.status
                if result.status == "ready":
                    text = f"✅ *{imp.filename}* is in your personal knowledge base. Ask me about it."
                else:
                    text = f"❌ I could not add *{imp.filename}*: {result.error_message or result.status}."
            except ChildWorkflowError as err:
                status = "failed"
                text = f"❌ I could not add *{imp.filename}*: {_message(err, 'its ingestion failed')}."
        await workflow.execute_activity_method(
            SlackFileActivities.post_reply,
            SlackReply(
                channel_id=share.channel_id, thread_ts=share.ts, text=text or "I could not add this file."
            ),
            **activity_presets.SLACK_CALL,
        )
        return status
