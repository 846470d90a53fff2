"""Run the workers of this process: the task-queue groups asked for (``keel worker
--queues``, default all; workers/queues.py), one set of clients shared by them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection
from contextlib import AsyncExitStack, asynccontextmanager

from temporalio.client import Client
from temporalio.worker import Worker

from infra.knowledge import KnowledgeServices
from infra.settings import Settings
from workers.audit_worker import running_audit_worker
from workers.chat_worker import chat_activities, running_chat_workers
from workers.ingest_worker import build_ingest_worker, ingest_activities
from workers.queues import KNOWLEDGE_GROUPS, QUEUE_GROUPS
from workers.slack_worker import running_slack_worker

_CHAT_POOL = frozenset({"chat", "retrieval", "tools"})


@asynccontextmanager
async def running_workers(
    client: Client,
    settings: Settings,
    knowledge: KnowledgeServices,
    groups: Collection[str] = QUEUE_GROUPS,
) -> AsyncIterator[list[Worker]]:
    """The workers of ``groups``, polling for the duration of the block (yielded, so a
    health check can see whether they run). ``slack`` runs only with a bot token."""
    if settings.embedding_provider == "local" and KNOWLEDGE_GROUPS & set(groups):
        # Load the embedding model before polling, so no activity pays for the cold start.
        await knowledge.embedder.ensure_dimension()
    async with AsyncExitStack() as stack:
        workers: list[Worker] = []
        if _CHAT_POOL & set(groups):
            chat = await stack.enter_async_context(chat_activities(settings, knowledge))
            workers += await stack.enter_async_context(running_chat_workers(client, settings, chat, groups))
        if "ingest" in groups:
            ingest = await stack.enter_async_context(ingest_activities(settings, knowledge))
            workers.append(await stack.enter_async_context(build_ingest_worker(client, settings, ingest)))
        if "audit" in groups:
            workers.append(await stack.enter_async_context(running_audit_worker(client, settings)))
        if "slack" in groups and settings.slack_enabled:
            workers.append(await stack.enter_async_context(running_slack_worker(client, settings)))
        yield workers
