"""The slack-bolt listeners. Each one acknowledges at once (bolt answers Slack before
the listener's work when ``process_before_response`` is off) and only starts a
workflow, whose id comes from the team and the message, file or click: Slack's
retried deliveries (up to 4), and the ``app_mention`` plus ``message`` Slack sends
for one @mention, start nothing new. Everything else (who the person is, what they
may see, the answer) happens in the workflow's activities.
"""

from __future__ import annotations

import re
from typing import Any

import structlog
from slack_bolt.async_app import AsyncAck, AsyncApp
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from core import names
from core.models.slack import SlackApprovalClick, SlackCommand, SlackFileShare, SlackMessage, SlackTurnInput
from infra.settings import Settings
from workflows.slack_commands import SlackCommandWorkflow
from workflows.slack_file import SlackFileWorkflow
from workflows.slack_turn import SlackApprovalWorkflow, SlackTurnWorkflow

log = structlog.get_logger(__name__)

_MENTION = re.compile(r"<@[A-Z0-9]+(?:\|[^>]*)?>")
#: Message subtypes that are a person writing to the bot (others: edits, joins, bots...).
_PERSON_SUBTYPES = (None, "file_share", "thread_broadcast")

HELP = (
    "*Keel* answers from the documents you may read and the tools your admins approved.\n"
    "• DM me, or @mention me in a channel: I answer in the thread; replies there continue the conversation.\n"
    "• `/keel ask <question>`: ask here; `/keel new`: start a new conversation for `/keel ask`.\n"
    "• `/keel kb`: the knowledge bases you can read; `/keel usage`: your token usage and budget.\n"
    "• Share a file with me in a DM: I add it to your personal knowledge base.\n"
    "In a channel I only use documents that every member of the channel may read."
)


class SlackStarter:
    """Starts the Slack workflows (deduplicated by id) on ``KEEL_SLACK_TASK_QUEUE``."""

    def __init__(self, temporal: Client, settings: Settings) -> None:
        self._temporal = temporal
        self._settings = settings

    @property
    def ingest_task_queue(self) -> str:
        return self._settings.ingest_task_queue

    @property
    def relay_timeout_s(self) -> int:
        s = self._settings
        return int(s.tool_approval_timeout_s + 2 * s.request_timeout_s + 600)

    async def start(self, run: Any, arg: Any, *, workflow_id: str, summary: str) -> bool:
        """False when the workflow already ran (a redelivery after it finished)."""
        try:
            await self._temporal.start_workflow(
                run,
                arg,
                id=workflow_id,
                task_queue=self._settings.slack_task_queue,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                static_summary=summary,
            )
        except WorkflowAlreadyStartedError:
            log.info("slack.duplicate", workflow_id=workflow_id)
            return False
        return True

    async def turn(self, msg: SlackMessage, *, dedupe_ts: str) -> None:
        await self.start(
            SlackTurnWorkflow.run,
            SlackTurnInput(message=msg, relay_timeout_s=self.relay_timeout_s),
            workflow_id=names.slack_turn_workflow_id(msg.team_id, msg.channel_id, dedupe_ts),
            summary=f"slack message from {msg.slack_user_id}",
        )


def _team(body: dict[str, Any]) -> str:
    return str(
        body.get("team_id") or (body.get("team") or {}).get("id") or body.get("user", {}).get("team_id") or ""
    )


def _stripped(event: dict[str, Any]) -> str:
    return _MENTION.sub("", str(event.get("text") or "")).strip()


async def _start_file_shares(starter: SlackStarter, event: dict[str, Any], team: str) -> None:
    for file in event.get("files") or []:
        share = SlackFileShare(
            team_id=team,
            channel_id=str(event["channel"]),
            slack_user_id=str(event["user"]),
            file_id=str(file.get("id")),
            ts=str(event["ts"]),
            ingest_task_queue=starter.ingest_task_queue,
        )
        await starter.start(
            SlackFileWorkflow.run,
            share,
            workflow_id=names.slack_file_workflow_id(team, share.file_id),
            summary=f"slack file from {share.slack_user_id}",
        )


async def on_message(
    starter: SlackStarter, event: dict[str, Any], body: dict[str, Any], *, mention: bool
) -> None:
    """A message event: DMs (and @mentions anywhere) become turns; files shared in a DM
    become documents. Bots (ourselves included), edits and joins are ignored."""
    if event.get("bot_id") or event.get("subtype") not in _PERSON_SUBTYPES or not event.get("user"):
        return
    team = str(event.get("team") or _team(body))
    channel_type = str(event.get("channel_type") or ("channel" if mention else "im"))
    if not mention and channel_type != "im":
        return  # in channels, only @mentions (the app_mention event) are for the bot
    if event.get("subtype") == "file_share" and channel_type == "im":
        await _start_file_shares(starter, event, team)
    text = _stripped(event)
    if not text:
        return
    msg = SlackMessage(
        team_id=team,
        channel_id=str(event["channel"]),
        channel_type=channel_type,
        slack_user_id=str(event["user"]),
        text=text[:40_000],
        ts=str(event["ts"]),
        thread_ts=str(event.get("thread_ts") or ""),
    )
    await starter.turn(msg, dedupe_ts=msg.ts)


def register(app: AsyncApp, starter: SlackStarter) -> None:
    """Attach Keel's listeners to ``app``."""

    @app.event("app_mention")
    async def app_mention(event: dict[str, Any], body: dict[str, Any]) -> None:
        await on_message(starter, event, body, mention=True)

    @app.event("message")
    async def message(event: dict[str, Any], body: dict[str, Any]) -> None:
        await on_message(starter, event, body, mention=False)

    @app.command("/keel")
    async def keel_command(ack: AsyncAck, command: dict[str, Any]) -> None:
        verb, _, rest = str(command.get("text") or "").strip().partition(" ")
        verb = verb.lower()
        team, channel, user = (
            str(command.get("team_id")),
            str(command.get("channel_id")),
            str(command.get("user_id")),
        )
        if verb == "ask" and rest.strip():
            await ack(response_type="ephemeral", text="Thinking… I'll answer in a thread here.")
            msg = SlackMessage(
                team_id=team,
                channel_id=channel,
                channel_type="im" if channel.startswith("D") else "channel",
                slack_user_id=user,
                text=rest.strip()[:40_000],
                source="command",
                response_url=command.get("response_url"),
            )
            await starter.turn(msg, dedupe_ts=f"cmd-{command.get('trigger_id')}")
            return
        if verb in ("new", "kb", "usage"):
            await ack(response_type="ephemeral", text="One moment…")
            cmd = SlackCommand(
                team_id=team,
                channel_id=channel,
                slack_user_id=user,
                name=verb,
                response_url=str(command.get("response_url") or ""),
                trigger_id=str(command.get("trigger_id") or ""),
            )
            await starter.start(
                SlackCommandWorkflow.run,
                cmd,
                workflow_id=names.slack_command_workflow_id(team, cmd.trigger_id),
                summary=f"/keel {verb} from {user}",
            )
            return
        await ack(response_type="ephemeral", text=HELP)

    async def on_decision(
        ack: AsyncAck, body: dict[str, Any], action: dict[str, Any], *, approved: bool
    ) -> None:
        await ack()
        user = body.get("user") or {}
        container = body.get("container") or {}
        channel = (body.get("channel") or {}).get("id") or container.get("channel_id") or ""
        message_ts = str(container.get("message_ts") or (body.get("message") or {}).get("ts") or "")
        click = SlackApprovalClick(
            team_id=_team(body),
            slack_user_id=str(user.get("id")),
            channel_id=str(channel),
            message_ts=message_ts,
            approval_id=str(action.get("value") or ""),
            approved=approved,
            response_url=body.get("response_url"),
        )
        await starter.start(
            SlackApprovalWorkflow.run,
            click,
            workflow_id=names.slack_action_workflow_id(
                click.team_id,
                click.approval_id,
                click.slack_user_id,
                str(action.get("action_ts") or message_ts),
            ),
            summary=f"slack approval click by {click.slack_user_id}",
        )

    @app.action("keel_approve")
    async def approve(ack: AsyncAck, body: dict[str, Any], action: dict[str, Any]) -> None:
        await on_decision(ack, body, action, approved=True)

    @app.action("keel_deny")
    async def deny(ack: AsyncAck, body: dict[str, Any], action: dict[str, Any]) -> None:
        await on_decision(ack, body, action, approved=False)

    @app.error
    async def on_error(error: Exception, body: dict[str, Any]) -> None:
        log.error(
            "slack.handler_failed", error=type(error).__name__, detail=str(error)[:300], kind=body.get("type")
        )
