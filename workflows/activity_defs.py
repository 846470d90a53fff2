"""The activities as workflows see them: names and payload types, no implementation.

A workflow schedules an activity by reference, ``workflow.execute_activity_method(
ChatActivities.call_llm, inp, ...)``; Temporal takes the activity's name (the method
name) and its input/result types (the pydantic data converter decodes the result into
the annotated type) from the ``@activity.defn`` method it is given. Naming the
implementation classes in activities/ would load them, and through them infra/ and its
SDKs (openai, mcp, agent-framework), into every process that imports a workflow,
the API included. So each implementation class has a ``Protocol`` here, named like it,
with the same methods and signatures; workflows import only these, which depend on
core and temporalio alone.

``tests/workflows/test_activity_defs.py`` checks that every activity a workflow can
call is registered, under the same name and with the same input and result types, on
the worker that runs that workflow, and (under mypy) that each implementation class
satisfies its protocol; a rename or a changed signature fails there, not at run time.
"""

from __future__ import annotations

from typing import Protocol

from temporalio import activity, workflow

with workflow.unsafe.imports_passed_through():
    from core.models.audit_jobs import (
        AuditRetentionResult,
        ExportBatchInput,
        ExportBatchResult,
        PurgeBatchInput,
        RecordPurgeInput,
    )
    from core.models.chat import (
        BeginTurnInput,
        CompleteTurnInput,
        DeleteSessionInput,
        EndSessionInput,
        LlmCallInput,
        LlmCallResult,
        RetrieveInput,
        RetrieveResult,
    )
    from core.models.ingest import (
        DeleteDocumentInput,
        DocumentAclInput,
        DocumentAclResult,
        IndexResult,
        IngestDocumentInput,
        MarkDocumentInput,
        ParseResult,
    )
    from core.models.knowledge_query import KnowledgeQueryInput, KnowledgeQueryResult
    from core.models.reservations import (
        BudgetGrant,
        ReserveBudgetInput,
        SettleBudgetInput,
        SettleBudgetResult,
    )
    from core.models.slack import (
        DeliverTurnInput,
        QuestionPost,
        RelayInput,
        RelayOutcome,
        SlackApprovalClick,
        SlackApprovalOutcome,
        SlackCommand,
        SlackFileImport,
        SlackFileShare,
        SlackMessage,
        SlackNotice,
        SlackReply,
        SlackResponse,
        SlackTurnPlan,
    )
    from core.models.tools import (
        CallToolInput,
        CallToolResult,
        LoadToolsInput,
        LoadToolsResult,
        RecordApprovalInput,
        RefusalInput,
        ResolveApprovalInput,
        ToolStepInput,
    )


class ChatActivities(Protocol):
    """activities.chat.ChatActivities (chat task queue)."""

    @activity.defn
    async def begin_turn(self, inp: BeginTurnInput) -> None: ...

    @activity.defn
    async def retrieve(self, inp: RetrieveInput) -> RetrieveResult: ...

    @activity.defn
    async def call_llm(self, inp: LlmCallInput) -> LlmCallResult: ...

    @activity.defn
    async def record_tool_step(self, inp: ToolStepInput) -> None: ...

    @activity.defn
    async def complete_turn(self, inp: CompleteTurnInput) -> None: ...

    @activity.defn
    async def delete_session(self, inp: DeleteSessionInput) -> None: ...

    @activity.defn
    async def end_session(self, inp: EndSessionInput) -> None: ...


class ToolActivities(Protocol):
    """activities.tools.ToolActivities (chat task queue)."""

    @activity.defn
    async def load_tools(self, inp: LoadToolsInput) -> LoadToolsResult: ...

    @activity.defn
    async def call_tool(self, inp: CallToolInput) -> CallToolResult: ...

    @activity.defn
    async def record_refusal(self, inp: RefusalInput) -> None: ...

    @activity.defn
    async def record_approval(self, inp: RecordApprovalInput) -> None: ...

    @activity.defn
    async def resolve_approval(self, inp: ResolveApprovalInput) -> None: ...

    @activity.defn
    async def discover_tools(self, server_id: str) -> list[str]: ...


class BudgetActivities(Protocol):
    """activities.budget.BudgetActivities (chat task queue)."""

    @activity.defn
    async def reserve_budget(self, inp: ReserveBudgetInput) -> BudgetGrant: ...

    @activity.defn
    async def settle_budget(self, inp: SettleBudgetInput) -> SettleBudgetResult: ...


class KnowledgeQueryActivities(Protocol):
    """activities.knowledge_query.KnowledgeQueryActivities (chat task queue)."""

    @activity.defn
    async def search_knowledge(self, inp: KnowledgeQueryInput) -> KnowledgeQueryResult: ...


class IngestActivities(Protocol):
    """activities.ingest.IngestActivities (ingest task queue)."""

    @activity.defn
    async def parse_document(self, inp: IngestDocumentInput) -> ParseResult: ...

    @activity.defn
    async def index_chunks(self, inp: IngestDocumentInput) -> IndexResult: ...

    @activity.defn
    async def mark_document(self, inp: MarkDocumentInput) -> None: ...

    @activity.defn
    async def delete_document(self, inp: DeleteDocumentInput) -> None: ...

    @activity.defn
    async def update_document_acl(self, inp: DocumentAclInput) -> DocumentAclResult: ...


class AuditActivities(Protocol):
    """activities.audit.AuditActivities (audit task queue)."""

    @activity.defn
    async def purge_expired(self, inp: PurgeBatchInput) -> int: ...

    @activity.defn
    async def record_purge(self, inp: RecordPurgeInput) -> AuditRetentionResult: ...

    @activity.defn
    async def export_batch(self, inp: ExportBatchInput) -> ExportBatchResult: ...


class SlackTurnActivities(Protocol):
    """activities.slack_turns.SlackTurnActivities (chat task queue)."""

    @activity.defn
    async def prepare_turn(self, msg: SlackMessage) -> SlackTurnPlan: ...

    @activity.defn
    async def post_question(self, inp: QuestionPost) -> str: ...

    @activity.defn
    async def post_notice(self, inp: SlackNotice) -> None: ...


class SlackRelayActivities(Protocol):
    """activities.slack_relay.SlackRelayActivities (chat task queue)."""

    @activity.defn
    async def relay_reply(self, inp: RelayInput) -> RelayOutcome: ...


class SlackDeliveryActivities(Protocol):
    """slack_app.delivery.SlackDeliveryActivities (chat task queue)."""

    @activity.defn
    async def deliver_turn(self, inp: DeliverTurnInput) -> None: ...

    @activity.defn
    async def decide_from_slack(self, click: SlackApprovalClick) -> SlackApprovalOutcome: ...


class SlackFileActivities(Protocol):
    """activities.slack_files.SlackFileActivities (chat task queue)."""

    @activity.defn
    async def import_file(self, share: SlackFileShare) -> SlackFileImport: ...

    @activity.defn
    async def post_reply(self, reply: SlackReply) -> None: ...


class SlackCommandActivities(Protocol):
    """activities.slack_commands.SlackCommandActivities (chat task queue)."""

    @activity.defn
    async def run_command(self, cmd: SlackCommand) -> str: ...

    @activity.defn
    async def respond(self, response: SlackResponse) -> None: ...
