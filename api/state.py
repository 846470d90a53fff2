"""What the API holds for its lifetime (opened in the lifespan, closed on shutdown)."""

from __future__ import annotations

from dataclasses import dataclass, field

import asyncpg
import redis.asyncio as aioredis
from temporalio.client import Client

from infra.agents import AgentRegistry
from infra.db.chat_repo import ChatRepository
from infra.db.knowledge_repo import KnowledgeRepository
from infra.db.tools_repo import ToolsRepository
from infra.knowledge import KnowledgeServices
from infra.settings import Settings
from infra.turn_events import TurnEventStream


@dataclass
class ApiResources:
    settings: Settings
    temporal: Client
    pool: asyncpg.Pool
    redis: aioredis.Redis
    knowledge: KnowledgeServices
    agents: AgentRegistry
    chats: ChatRepository = field(init=False)
    knowledge_repo: KnowledgeRepository = field(init=False)
    tools_repo: ToolsRepository = field(init=False)
    events: TurnEventStream = field(init=False)

    def __post_init__(self) -> None:
        self.chats = ChatRepository(self.pool)
        self.knowledge_repo = KnowledgeRepository(self.pool)
        self.tools_repo = ToolsRepository(self.pool)
        self.events = TurnEventStream(self.redis, ttl_s=self.settings.stream_ttl_s)
