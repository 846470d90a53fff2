"""The Slack worker: the Slack workflows and their activities on ``KEEL_SLACK_TASK_QUEUE``.
``keel worker`` runs it when ``KEEL_SLACK_BOT_TOKEN`` is set. This is the only place the
Slack activities' clients are wired together."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from temporalio.client import Client
from temporalio.worker import Worker

from activities.slack_commands import SlackCommandActivities
from activities.slack_files import SlackFileActivities
from activities.slack_people import DirectoryApprovers, SlackPeople
from activities.slack_relay import SlackRelayActivities
from activities.slack_turns import SlackTurnActivities
from infra.agents import AgentRegistry
from infra.audit.log import AuditLog
from infra.auth.graph_users import GraphUsers
from infra.blobstore import FilesystemBlobStore
from infra.circuit import create_circuits
from infra.db.chat_repo import ChatRepository
from infra.db.knowledge_repo import KnowledgeRepository
from infra.db.pool import create_pool
from infra.db.slack_repo import SlackRepository
from infra.db.tools_repo import ToolsRepository
from infra.db.usage_repo import UsageRepository
from infra.db.users_repo import UserDirectory
from infra.identity_directory import DirectoryResolver
from infra.rate_limit import RateLimiter
from infra.redis_client import create_redis
from infra.settings import Settings
from infra.slack_web import ChannelPacer, slack_web_client
from infra.turn_events import TurnEventStream
from slack_app.delivery import SlackDeliveryActivities
from workers.queues import shutdown_options
from workflows.slack_commands import SlackCommandWorkflow
from workflows.slack_file import SlackFileWorkflow
from workflows.slack_turn import SlackApprovalWorkflow, SlackTurnWorkflow


@dataclass(frozen=True)
class SlackWorkerActivities:
    turns: SlackTurnActivities
    relay: SlackRelayActivities
    delivery: SlackDeliveryActivities
    files: SlackFileActivities
    commands: SlackCommandActivities


@asynccontextmanager
async def slack_activities(client: Client, settings: Settings) -> AsyncIterator[SlackWorkerActivities]:
    if not settings.database_url or not settings.redis_url:
        raise RuntimeError("KEEL_DATABASE_URL and KEEL_REDIS_URL must be set for the worker")
    pool = await create_pool(settings.database_url)
    redis = create_redis(settings.redis_url)
    slack = slack_web_client(settings, create_circuits(settings, redis).get("slack"))
    graph = GraphUsers.from_settings(settings, redis=redis)
    directory = UserDirectory(pool)
    people = SlackPeople(
        slack=slack, redis=redis, resolver=DirectoryResolver(directory, graph), cache_s=settings.slack_cache_s
    )
    pacer = ChannelPacer(redis, interval_s=settings.slack_post_interval_s)
    audit = AuditLog(pool, hmac_key=settings.resolved_audit_hmac_key)
    knowledge_repo = KnowledgeRepository(pool)
    try:
        yield SlackWorkerActivities(
            turns=SlackTurnActivities(
                slack=slack,
                people=people,
                repo=SlackRepository(pool),
                chats=ChatRepository(pool),
                rate_limiter=RateLimiter(
                    redis, per_minute=settings.rate_limit_per_minute, fail_mode=settings.rate_limit_fail_mode
                ),
                pacer=pacer,
                web_base_url=settings.web_base_url,
                public_rule=settings.slack_public_channels,
            ),
            relay=SlackRelayActivities(
                slack=slack,
                events=TurnEventStream(redis, ttl_s=settings.stream_ttl_s),
                pacer=pacer,
                approvers=DirectoryApprovers(slack=slack, directory=directory),
                web_base_url=settings.web_base_url,
                max_chars=settings.slack_message_max_chars,
                post_interval_s=settings.slack_post_interval_s,
            ),
            delivery=SlackDeliveryActivities(
                temporal=client,
                settings=settings,
                agents=AgentRegistry.load(settings.agents_path),
                audit=audit,
                tools_repo=ToolsRepository(pool),
                people=people,
            ),
            files=SlackFileActivities(
                slack=slack,
                settings=settings,
                temporal=client,
                people=people,
                knowledge_repo=knowledge_repo,
                blobs=FilesystemBlobStore(settings.resolved_blob_path),
                audit=audit,
                pacer=pacer,
            ),
            commands=SlackCommandActivities(
                settings=settings,
                people=people,
                repo=SlackRepository(pool),
                knowledge_repo=knowledge_repo,
                usage_repo=UsageRepository(pool),
            ),
        )
    finally:
        if graph is not None:
            await graph.aclose()
        await redis.aclose()
        await pool.close()


def build_slack_worker(client: Client, settings: Settings, activities: SlackWorkerActivities) -> Worker:
    a = activities
    return Worker(
        client,
        task_queue=settings.slack_task_queue,
        workflows=[SlackTurnWorkflow, SlackApprovalWorkflow, SlackFileWorkflow, SlackCommandWorkflow],
        activities=[
            a.turns.prepare_turn,
            a.turns.post_question,
            a.turns.post_notice,
            a.relay.relay_reply,
            a.delivery.deliver_turn,
            a.delivery.decide_from_slack,
            a.files.import_file,
            a.files.post_reply,
            a.commands.run_command,
            a.commands.respond,
        ],
        max_concurrent_activities=200,
        **shutdown_options(settings),
    )


@asynccontextmanager
async def running_slack_worker(client: Client, settings: Settings) -> AsyncIterator[Worker]:
    async with (
        slack_activities(client, settings) as activities,
        build_slack_worker(client, settings, activities) as worker,
    ):
        yield worker
