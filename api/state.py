"""What the API holds for its lifetime (opened in the lifespan, closed on shutdown)."""

from __future__ import annotations

from dataclasses import dataclass, field

import asyncpg
import redis.asyncio as aioredis
from temporalio.client import Client

from infra.agents import AgentRegistry
from infra.audit.log import AuditLog
from infra.auth.api_keys import ApiKeyService
from infra.auth.oidc import OidcVerifier
from infra.auth.web_sessions import WebSessionStore
from infra.blobstore import BlobStore
from infra.db.api_keys_repo import ApiKeyRepository
from infra.db.chat_repo import ChatRepository
from infra.db.knowledge_repo import KnowledgeRepository
from infra.db.tools_repo import ToolsRepository
from infra.db.users_repo import UserDirectory
from infra.identity_directory import SignInRecorder
from infra.rate_limit import ConcurrencyGuard, RateLimiter
from infra.settings import Settings
from infra.turn_events import TurnEventStream


@dataclass(frozen=True)
class ApiKnowledge:
    """The knowledge services of the API process: the blob store uploads are written to
    (a directory under the data dir, shared with the worker). Embedding and vector search
    run in the worker (``KnowledgeQueryWorkflow``), so the API never loads the model."""

    blobs: BlobStore


@dataclass
class ApiResources:
    settings: Settings
    temporal: Client
    pool: asyncpg.Pool
    redis: aioredis.Redis
    knowledge: ApiKnowledge
    agents: AgentRegistry
    oidc: OidcVerifier | None = None
    chats: ChatRepository = field(init=False)
    knowledge_repo: KnowledgeRepository = field(init=False)
    tools_repo: ToolsRepository = field(init=False)
    events: TurnEventStream = field(init=False)
    audit: AuditLog = field(init=False)
    api_keys: ApiKeyService = field(init=False)
    web_sessions: WebSessionStore = field(init=False)
    users: UserDirectory = field(init=False)
    sign_ins: SignInRecorder = field(init=False)
    rate_limiter: RateLimiter = field(init=False)
    concurrency: ConcurrencyGuard = field(init=False)

    def __post_init__(self) -> None:
        self.chats = ChatRepository(self.pool)
        self.knowledge_repo = KnowledgeRepository(self.pool)
        self.tools_repo = ToolsRepository(self.pool)
        self.events = TurnEventStream(self.redis, ttl_s=self.settings.stream_ttl_s)
        settings = self.settings
        self.audit = AuditLog(self.pool, hmac_key=settings.resolved_audit_hmac_key)
        self.api_keys = ApiKeyService(ApiKeyRepository(self.pool), max_ttl_days=settings.api_key_max_ttl_days)
        self.web_sessions = WebSessionStore(self.redis, ttl_s=settings.session_ttl_s)
        self.users = UserDirectory(self.pool)
        self.sign_ins = SignInRecorder(
            self.users, self.redis, interval_s=settings.directory_record_interval_s
        )
        self.rate_limiter = RateLimiter(
            self.redis, per_minute=settings.rate_limit_per_minute, fail_mode=settings.rate_limit_fail_mode
        )
        self.concurrency = ConcurrencyGuard(
            self.redis,
            limit=settings.max_concurrent_requests,
            lease_s=settings.request_timeout_s + 30,
            fail_mode=settings.rate_limit_fail_mode,
        )
