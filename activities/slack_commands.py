"""``/keel new``, ``/keel kb``, ``/keel usage``: answered to the person alone, through
the command's ``response_url`` (Slack's, so only a Slack host, or the configured
``KEEL_SLACK_API_URL`` host in tests, is posted to)."""

from __future__ import annotations

import uuid
from urllib.parse import urlsplit

import httpx
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.slack_format import escape_mrkdwn
from activities.slack_people import SlackPeople
from activities.slack_turns import refusal_text, slack_principal
from core.models.slack import SlackCommand, SlackResponse
from core.names import slack_session_id
from core.policy.acl import acl_filter
from core.policy.budget import BudgetLimits
from infra.db.knowledge_repo import KnowledgeRepository, personal_kb_id
from infra.db.slack_repo import SlackRepository
from infra.db.usage_repo import UsageRepository
from infra.settings import Settings

_SLACK_HOSTS = ("slack.com", ".slack.com")


def _limit(value: int | None) -> str:
    return "no limit" if value is None else f"{value:,}"


class SlackCommandActivities:
    def __init__(
        self,
        *,
        settings: Settings,
        people: SlackPeople,
        repo: SlackRepository,
        knowledge_repo: KnowledgeRepository,
        usage_repo: UsageRepository,
    ) -> None:
        self._settings = settings
        self._people = people
        self._repo = repo
        self._knowledge = knowledge_repo
        self._usage = usage_repo

    @activity.defn
    async def run_command(self, cmd: SlackCommand) -> str:
        person = await self._people.resolve(cmd.team_id, cmd.slack_user_id)
        if person.principal is None:
            return refusal_text(person.refusal or "unknown_user", self._settings.web_base_url)
        principal = slack_principal(person.principal)
        if cmd.name == "new":
            await self._repo.set_command_session(
                team_id=cmd.team_id,
                channel_id=cmd.channel_id,
                slack_user_id=cmd.slack_user_id,
                session_id=slack_session_id(
                    cmd.team_id, cmd.channel_id, "", principal.user_id, uuid.uuid4().hex
                ),
                replace=True,
            )
            return "Started a new conversation: your next `/keel ask` here begins afresh."
        if cmd.name == "kb":
            kbs = await self._knowledge.readable_kbs(acl_filter(principal))
            mine = personal_kb_id(principal.user_id)
            if all(kb.id != mine for kb in kbs):  # as GET /knowledge-bases: the personal one is always there
                kbs.insert(
                    0,
                    await self._knowledge.ensure_personal_kb(
                        principal.user_id, display_name=principal.display_name, email=principal.email
                    ),
                )
            kbs.sort(key=lambda kb: kb.id != mine)  # yours first
            lines = []
            for kb in kbs:
                if kb.id == mine:
                    label = "Personal (yours)"
                elif kb.owner_type == "user":
                    label = (
                        f"{kb.owner_display_name or kb.owner_email or 'Someone'}'s personal (shared with you)"
                    )
                else:
                    label = kb.name
                lines.append(f"• {escape_mrkdwn(label)} — `{kb.id}`")
            return "*Knowledge bases you can read*\n" + "\n".join(lines)
        summary = await self._usage.summary(
            principal.user_id,
            defaults=BudgetLimits(
                daily=self._settings.budget_daily_tokens, monthly=self._settings.budget_monthly_tokens
            ),
        )
        s = summary.standing
        return (
            "*Your token usage*\n"
            f"• Today: {s.used_today:,} of {_limit(s.limits.daily)}\n"
            f"• This month: {s.used_this_month:,} of {_limit(s.limits.monthly)}\n"
            f"• Reserved by running turns: {s.reserved:,}"
        )

    @activity.defn
    async def respond(self, response: SlackResponse) -> None:
        host = (urlsplit(response.response_url).hostname or "").lower()
        allowed = host == (urlsplit(self._settings.slack_api_url).hostname or "").lower() or any(
            host == h.lstrip(".") or host.endswith(h) for h in _SLACK_HOSTS
        )
        if not allowed:
            raise ApplicationError(
                f"not a Slack response_url host: {host}", type="slack_error", non_retryable=True
            )
        async with httpx.AsyncClient(timeout=15) as http:
            reply = await http.post(
                response.response_url,
                json={"response_type": "ephemeral", "replace_original": False, "text": response.text},
            )
        if reply.status_code == 429:
            raise ApplicationError("Slack is rate limiting the response", type="slack_rate_limited")
        if reply.status_code >= 400:
            raise ApplicationError(
                f"Slack answered {reply.status_code} to the response",
                type="slack_error",
                non_retryable=reply.status_code < 500,
            )
