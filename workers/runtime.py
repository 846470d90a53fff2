"""Run every worker of this process: chat, ingest and audit task queues, one set of clients."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from temporalio.client import Client

from infra.knowledge import KnowledgeServices
from infra.settings import Settings
from workers.audit_worker import running_audit_worker
from workers.chat_worker import build_chat_worker, chat_activities
from workers.ingest_worker import build_ingest_worker, ingest_activities
from workers.slack_worker import running_slack_worker


@asynccontextmanager
async def running_workers(
    client: Client, settings: Settings, knowledge: KnowledgeServices
) -> AsyncIterator[None]:
    if settings.embedding_provider == "local":
        # Load the embedding model before polling, so no activity pays for the cold start.
        await knowledge.embedder.ensure_dimension()
    async with (
        chat_activities(settings, knowledge) as chat,
        ingest_activities(settings, knowledge) as ingest,
        build_chat_worker(client, settings, chat),
        build_ingest_worker(client, settings, ingest),
        running_audit_worker(client, settings),
        AsyncExitStack() as slack,
    ):
        if settings.slack_enabled:  # the Slack workflows, on their own task queue
            await slack.enter_async_context(running_slack_worker(client, settings))
        yield
