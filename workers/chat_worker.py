"""The chat worker: ChatSessionWorkflow, KnowledgeQueryWorkflow and their activities on the
chat task queue.

This is the only place the chat activities' clients are wired together.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

from temporalio.client import Client
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from activities.budget import BudgetActivities, BudgetConfig
from activities.chat import ChatActivities, PromptConfig
from activities.knowledge_query import KnowledgeQueryActivities
from activities.tools import ToolActivities
from infra.agents import AgentRegistry
from infra.audit.log import AuditLog
from infra.circuit import create_circuits
from infra.db.chat_repo import ChatRepository
from infra.db.knowledge_repo import KnowledgeRepository
from infra.db.pool import create_pool
from infra.db.tools_repo import ToolsRepository
from infra.db.usage_repo import UsageRepository
from infra.egress import resolve_and_check
from infra.knowledge import KnowledgeServices
from infra.llm import ChatModel
from infra.mcp_client import McpToolClient
from infra.redis_client import create_redis
from infra.settings import Settings
from infra.turn_events import TurnEventStream
from workers.queues import shutdown_options
from workflows.chat_session import ChatSessionWorkflow
from workflows.knowledge_query import KnowledgeQueryWorkflow
from workflows.tool_discovery import ToolDiscoveryWorkflow


@dataclass(frozen=True)
class ChatWorkerActivities:
    chat: ChatActivities
    tools: ToolActivities
    budget: BudgetActivities
    query: KnowledgeQueryActivities


@asynccontextmanager
async def chat_activities(
    settings: Settings, knowledge: KnowledgeServices
) -> AsyncIterator[ChatWorkerActivities]:
    if not settings.database_url or not settings.redis_url:
        raise RuntimeError("KEEL_DATABASE_URL and KEEL_REDIS_URL must be set for the worker")
    agents = AgentRegistry.load(settings.agents_path)
    pool = await create_pool(settings.database_url)
    redis = create_redis(settings.redis_url)
    model = ChatModel(settings)
    circuits = create_circuits(settings, redis)  # shared by every worker through Redis
    allowed_hosts = settings.tool_allowed_hosts

    async def guard(url: str) -> list[str]:  # every new HTTP tool connection is re-checked (DNS may change)
        return await resolve_and_check(url, allowed_hosts=allowed_hosts)  # ... and pinned to these

    mcp = McpToolClient(
        url_guard=guard,
        stdio_allowed_commands=settings.mcp_stdio_allowed_commands,
        stdio_run_as_user=settings.mcp_stdio_run_as_user,
    )
    events = TurnEventStream(redis, ttl_s=settings.stream_ttl_s)
    knowledge_repo = KnowledgeRepository(pool)
    tools_repo = ToolsRepository(pool)
    audit = AuditLog(pool, hmac_key=settings.resolved_audit_hmac_key)
    chat = ChatActivities(
        repo=ChatRepository(pool),
        events=events,
        model=model,
        prompt=PromptConfig(
            system_prompt=settings.system_prompt,
            history_max_messages=settings.chat_history_max_messages,
            retrieval_top_k=settings.retrieval_top_k,
            retrieval_min_score=settings.retrieval_min_score,
            max_output_tokens=settings.llm_max_output_tokens,
        ),
        knowledge=knowledge,
        knowledge_repo=knowledge_repo,
        tools_repo=tools_repo,
        agents=agents,
        audit=audit,
        circuits=circuits,
        tool_redact_pattern=settings.tool_redact_pattern,
    )
    try:
        yield ChatWorkerActivities(
            chat=chat,
            tools=ToolActivities(
                repo=tools_repo,
                mcp=mcp,
                events=events,
                redact_pattern=settings.tool_redact_pattern,
                secrets=settings.tool_header_secrets,
                agents=agents,
                audit=audit,
                circuits=circuits,
            ),
            budget=BudgetActivities(
                repo=UsageRepository(pool),
                prompts=chat.prompts,
                config=BudgetConfig(
                    daily_tokens=settings.budget_daily_tokens,
                    monthly_tokens=settings.budget_monthly_tokens,
                    warning_ratio=settings.budget_warning_ratio,
                    reservation_ttl_s=settings.budget_reservation_ttl_s,
                    prices=settings.llm_prices,
                    currency=settings.cost_currency,
                    default_model=settings.llm_model_name,
                ),
            ),
            query=KnowledgeQueryActivities(knowledge=knowledge, repo=knowledge_repo, circuits=circuits),
        )
    finally:
        await mcp.aclose()
        await model.aclose()
        await redis.aclose()
        await pool.close()


def build_chat_worker(client: Client, settings: Settings, activities: ChatWorkerActivities) -> Worker:
    """The chat task queue's worker: the chat workflows, their local activities (short
    Postgres/Redis steps that run inside the workflow task) and the model call. Knowledge
    searches and tool calls run on their own queues (:func:`build_retrieval_worker`,
    :func:`build_tools_worker`): bulkheads, docs/operations.md.

    Its workflows run without the SDK's sandbox: every chat turn is a few workflow
    activations, and the sandbox's per-activation cost was about a sixth of the worker's
    CPU per turn (bench/README.md). Determinism is still checked with the sandbox where it
    is cheap: the replay tests (``Replayer``'s default runner) replay every committed
    history in it, and lint-imports keeps I/O libraries out of workflows/."""
    chat, tools, budget = activities.chat, activities.tools, activities.budget
    return Worker(
        client,
        task_queue=settings.chat_task_queue,
        workflows=[ChatSessionWorkflow],
        activities=[
            chat.begin_turn,
            chat.call_llm,
            chat.record_tool_step,
            chat.complete_turn,
            chat.end_session,
            chat.delete_session,
            tools.load_tools,
            tools.record_refusal,
            tools.record_approval,
            tools.resolve_approval,
            budget.reserve_budget,
            budget.settle_budget,
        ],
        max_concurrent_activities=200,
        workflow_runner=UnsandboxedWorkflowRunner(),
        **shutdown_options(settings),
    )


def build_retrieval_worker(client: Client, settings: Settings, activities: ChatWorkerActivities) -> Worker:
    """Knowledge searches (a chat turn's ``retrieve``, and the direct query's workflow with
    its ``search_knowledge``): embedding the query and searching the vector index."""
    return Worker(
        client,
        task_queue=settings.retrieval_task_queue,
        workflows=[KnowledgeQueryWorkflow],
        activities=[activities.chat.retrieve, activities.query.search_knowledge],
        max_concurrent_activities=64,
        **shutdown_options(settings),
    )


def build_tools_worker(client: Client, settings: Settings, activities: ChatWorkerActivities) -> Worker:
    """MCP tool calls, and tool discovery's workflow: each may wait up to its tool's timeout."""
    return Worker(
        client,
        task_queue=settings.tools_task_queue,
        workflows=[ToolDiscoveryWorkflow],
        activities=[activities.tools.call_tool, activities.tools.discover_tools],
        max_concurrent_activities=100,
        **shutdown_options(settings),
    )


_BUILDERS = {"chat": build_chat_worker, "retrieval": build_retrieval_worker, "tools": build_tools_worker}


@asynccontextmanager
async def running_chat_workers(
    client: Client,
    settings: Settings,
    activities: ChatWorkerActivities,
    groups: Collection[str] = tuple(_BUILDERS),
) -> AsyncIterator[list[Worker]]:
    """The chat, retrieval and tools workers (those of ``groups``), polling for the block."""
    async with AsyncExitStack() as stack:
        yield [
            await stack.enter_async_context(build(client, settings, activities))
            for name, build in _BUILDERS.items()
            if name in groups
        ]
