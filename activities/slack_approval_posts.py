"""Approval requests in Slack, as a turn's relay posts them: the request in the thread
(with Approve / Deny when the requester decides), a DM with the buttons to each member
of the approver group Keel knows, and every one of those messages rewritten to who
decided once the ``approval.decided`` event arrives (from Slack, the web UI or the API).
Where they were posted is part of the relay's heartbeat checkpoint."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import structlog
from pydantic import BaseModel

from activities.slack_format import approval_blocks, decided_blocks
from core.models.slack import ReplyTarget
from core.models.tools import ApprovalView
from infra.slack_web import SlackCallFailed

log = structlog.get_logger(__name__)

#: ``call(pace_channel, method, **params)``: a paced Slack Web API call.
SlackCall = Callable[..., Awaitable[dict[str, Any]]]


class PostedApproval(BaseModel):
    channel_id: str
    ts: str


class Approvers(Protocol):
    """Where an approval request goes in a DM: the approver group's members Keel knows."""

    async def dm_channels(self, group_id: str, *, except_slack_user: str) -> list[str]: ...


class ApprovalPosts:
    def __init__(
        self,
        *,
        call: SlackCall,
        target: ReplyTarget,
        approvers: Approvers,
        approvals: dict[str, list[PostedApproval]],
        decided: list[str],
    ) -> None:
        self._call = call
        self._target = target
        self._approvers = approvers
        self._approvals = approvals  # the checkpoint's: mutated in place
        self._decided = decided

    @property
    def waiting(self) -> bool:
        """Some request posted here is not decided yet (new events will come)."""
        return any(a not in self._decided for a in self._approvals)

    async def request(self, view: ApprovalView) -> None:
        """Post the request once (a retried relay replays the event: it is skipped)."""
        if view.id in self._approvals or view.status != "pending":
            return
        posted: list[PostedApproval] = []
        self._approvals[view.id] = posted
        blocks = approval_blocks(
            approval_id=view.id,
            tool=view.tool,
            arguments=view.arguments,
            requester=f"<@{self._target.slack_user_id}>",
            reason=view.reason,
        )
        text = f"Approval needed to run {view.tool}"
        if view.approver_group is None:  # the requester decides, here in the thread
            reply = await self._call(
                self._target.channel_id,
                "chat.postMessage",
                channel=self._target.channel_id,
                thread_ts=self._target.thread_ts,
                text=text,
                blocks=blocks,
                unfurl_links=False,
                unfurl_media=False,
            )
            posted.append(PostedApproval(channel_id=self._target.channel_id, ts=str(reply["ts"])))
            return
        note = (
            f"Waiting for approval by a member of `{view.approver_group}` (in Slack, or in Keel's approvals)."
        )
        reply = await self._call(
            self._target.channel_id,
            "chat.postMessage",
            channel=self._target.channel_id,
            thread_ts=self._target.thread_ts,
            text=note,
            blocks=[{"type": "section", "text": {"type": "mrkdwn", "text": note}}],
            unfurl_links=False,
            unfurl_media=False,
        )
        posted.append(PostedApproval(channel_id=self._target.channel_id, ts=str(reply["ts"])))
        # The requester may not approve their own call: no DM to them.
        for channel in await self._approvers.dm_channels(
            view.approver_group, except_slack_user=self._target.slack_user_id
        ):
            try:
                dm = await self._call(
                    channel,
                    "chat.postMessage",
                    channel=channel,
                    text=text,
                    blocks=blocks,
                    unfurl_links=False,
                    unfurl_media=False,
                )
            except SlackCallFailed as err:
                log.warning("slack.approver_dm_failed", error=err.error, channel=channel)
                continue
            posted.append(PostedApproval(channel_id=channel, ts=str(dm["ts"])))

    async def rewrite(self, data: dict[str, Any]) -> None:
        """An ``approval.decided`` event: every message that showed the request says who decided."""
        approval_id = str(data.get("id", ""))
        if approval_id in self._decided:
            return
        status, decided_by = (
            str(data.get("status", "")),
            data.get("decided_by_name") or data.get("decided_by"),
        )
        for where in self._approvals.get(approval_id, []):
            blocks = decided_blocks(
                tool=str(data.get("tool", "")),
                arguments=dict(data.get("arguments") or {}),
                status=status,
                decided_by=str(decided_by) if decided_by else None,
            )
            try:
                await self._call(
                    where.channel_id,
                    "chat.update",
                    channel=where.channel_id,
                    ts=where.ts,
                    text=f"{data.get('tool', 'tool')}: {status}",
                    blocks=blocks,
                )
            except SlackCallFailed as err:
                if err.permanent:
                    log.warning("slack.approval_rewrite_failed", error=err.error, ts=where.ts)
                    continue
                raise
        self._decided.append(approval_id)
