"""The chat worker: ChatSessionWorkflow and its activities on the chat task queue.

This is the only place the chat activities' clients are wired together.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from temporalio.client import Client
from temporalio.worker import Worker

from activities.chat import ChatActivities, PromptConfig
from infra.db.chat_repo import ChatRepository
from infra.db.knowledge_repo import KnowledgeRepository
from infra.db.pool import create_pool
from infra.knowledge import KnowledgeServices
from infra.llm import ChatModel
from infra.redis_client import create_redis
from infra.settings import Settings
from infra.turn_events import TurnEventStream
from workflows.chat_session import ChatSessionWorkflow


@asynccontextmanager
async def chat_activities(settings: Settings, knowledge: KnowledgeServices) -> AsyncIterator[ChatActivities]:
    if not settings.database_url or not settings.redis_url:
        raise RuntimeError("KEEL_DATABASE_URL and KEEL_REDIS_URL must be set for the worker")
    pool = await create_pool(settings.database_url)
    redis = create_redis(settings.redis_url)
    model = ChatModel(settings)
    try:
        yield ChatActivities(
            repo=ChatRepository(pool),
            events=TurnEventStream(redis, ttl_s=settings.stream_ttl_s),
            model=model,
            prompt=PromptConfig(
                system_prompt=settings.system_prompt,
                history_max_messages=settings.chat_history_max_messages,
                retrieval_top_k=settings.retrieval_top_k,
            ),
            knowledge=knowledge,
            knowledge_repo=KnowledgeRepository(pool),
        )
    finally:
        await model.aclose()
        await redis.aclose()
        await pool.close()


def build_chat_worker(client: Client, settings: Settings, activities: ChatActivities) -> Worker:
    return Worker(
        client,
        task_queue=settings.chat_task_queue,
        workflows=[ChatSessionWorkflow],
        activities=[
            activities.begin_turn,
            activities.retrieve,
            activities.call_llm,
            activities.complete_turn,
            activities.delete_session,
        ],
        max_concurrent_activities=200,
    )
