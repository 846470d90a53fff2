"""The Slack side of a turn before the model: who asks, which session, who will see
the answer; and the short posts around it (the ``/keel ask`` question, notices).

``prepare_turn`` refuses before anything reaches the model when the person is not a
Keel user (or a guest, a deactivated account, a bot), may not use the agent, or is
over the rate limit; the workflow then tells them so, ephemerally.
"""

from __future__ import annotations

import uuid

import structlog
from slack_sdk.web.async_client import AsyncWebClient
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.slack_errors import SLACK_ERROR, slack_failure
from activities.slack_format import neutralize, notification_text
from activities.slack_people import SlackPeople
from core.models.principal import Principal
from core.models.slack import QuestionPost, SlackMessage, SlackNotice, SlackPrincipal, SlackTurnPlan
from core.names import slack_session_id, slack_turn_id
from core.policy.permissions import Permission, is_granted
from infra.db.chat_repo import ChatRepository
from infra.db.slack_repo import SlackRepository
from infra.rate_limit import RateLimiter
from infra.slack_web import ChannelPacer, SlackCallFailed, SlackRateLimited, slack_call

log = structlog.get_logger(__name__)


def slack_principal(p: SlackPrincipal) -> Principal:
    return Principal(
        user_id=p.user_id,
        email=p.email,
        display_name=p.display_name,
        groups=tuple(p.groups),
        roles=tuple(p.roles),
        auth_method="slack",
    )


def refusal_text(reason: str, web_base_url: str, *, then: str = "ask again") -> str:
    sign_in = f"{web_base_url.rstrip('/')}/"
    return {
        "unknown_user": f"I don't know you in Keel yet. Sign in to Keel once at {sign_in}, then {then}.",
        "no_email": "Your Slack profile has no verified email, so I can't tell who you are in Keel.",
        "guest": "Guests can't use Keel.",
        "disabled": "Your Keel account is deactivated.",
        "forbidden": "Your Keel account may not use the agent. Ask an administrator for access.",
        "rate_limited": "You're sending messages faster than allowed. Wait a minute and ask again.",
        "not_in_channel": "I'm not a member of this channel. Invite me (/invite) and ask again, or DM me.",
    }.get(reason, "I can't answer this request.")


class SlackTurnActivities:
    def __init__(
        self,
        *,
        slack: AsyncWebClient,
        people: SlackPeople,
        repo: SlackRepository,
        chats: ChatRepository,
        rate_limiter: RateLimiter,
        pacer: ChannelPacer,
        web_base_url: str,
        public_rule: str = "org",
    ) -> None:
        self._public_rule = public_rule
        self._slack = slack
        self._people = people
        self._repo = repo
        self._chats = chats
        self._rate_limiter = rate_limiter
        self._pacer = pacer
        self._web_base_url = web_base_url

    @activity.defn
    async def prepare_turn(self, msg: SlackMessage) -> SlackTurnPlan:
        try:
            return await self._prepare(msg)
        except (SlackCallFailed, SlackRateLimited) as err:
            raise slack_failure(err) from err

    async def _prepare(self, msg: SlackMessage) -> SlackTurnPlan:
        person = await self._people.resolve(msg.team_id, msg.slack_user_id)
        if person.principal is None:
            log.info("slack.refused", reason=person.refusal, slack_user=msg.slack_user_id)
            reason = person.refusal or "unknown_user"
            return SlackTurnPlan(status="refused", reason=reason, notice=self._refusal(reason))
        asker = person.principal
        if not is_granted(slack_principal(asker), Permission.USE_AGENT):
            return SlackTurnPlan(
                status="refused", principal=asker, reason="forbidden", notice=self._refusal("forbidden")
            )
        decision = await self._rate_limiter.hit(asker.user_id)
        if not decision.allowed:
            return SlackTurnPlan(
                status="refused", principal=asker, reason="rate_limited", notice=self._refusal("rate_limited")
            )
        if msg.source == "command":
            thread_ts = ""
            session_id = await self._repo.set_command_session(
                team_id=msg.team_id,
                channel_id=msg.channel_id,
                slack_user_id=msg.slack_user_id,
                session_id=slack_session_id(msg.team_id, msg.channel_id, "", asker.user_id, uuid.uuid4().hex),
                replace=False,
            )
            turn_id = slack_turn_id(msg.team_id, msg.channel_id, activity.info().workflow_id or msg.ts)
        else:
            thread_ts = msg.thread_ts or msg.ts
            session_id = await self._repo.thread_session(
                team_id=msg.team_id, channel_id=msg.channel_id, thread_ts=thread_ts, user_id=asker.user_id
            ) or slack_session_id(msg.team_id, msg.channel_id, thread_ts, asker.user_id)
            turn_id = slack_turn_id(msg.team_id, msg.channel_id, msg.ts)
        existing = await self._chats.get_session(session_id, user_id=asker.user_id) is not None
        plan = SlackTurnPlan(
            status="ready",
            principal=asker,
            session_id=session_id,
            existing=existing,
            turn_id=turn_id,
            thread_ts=thread_ts,
        )
        if msg.channel_type == "im" and msg.source == "event":  # Slack's own word: a DM with the bot
            return plan
        if msg.source == "command":  # a command names only the channel: ask Slack what it is
            try:
                if (await self._people.channel(msg.team_id, msg.channel_id))["is_im"]:
                    return plan
            except SlackCallFailed as err:
                if err.error != "channel_not_found":
                    raise
                return SlackTurnPlan(
                    status="refused", reason="not_in_channel", notice=self._refusal("not_in_channel")
                )
        audience, searchable, rule = await self._people.audience(
            msg.team_id, msg.channel_id, asker, public_rule=self._public_rule
        )
        return plan.model_copy(update={"rule": rule, "audience": audience, "search_knowledge": searchable})

    @activity.defn
    async def post_question(self, inp: QuestionPost) -> str:
        """Post ``/keel ask``'s question as the bot (the answer goes to its thread); the
        thread then continues the command session. Returns the thread's ts."""
        await self._pacer.wait(inp.channel_id)
        text = f"<@{inp.slack_user_id}> asked: {neutralize(inp.text)}"
        try:
            reply = await slack_call(
                self._slack,
                "chat.postMessage",
                channel=inp.channel_id,
                text=notification_text(text),
                markdown_text=text[:11_000],
                unfurl_links=False,
                unfurl_media=False,
            )
        except SlackCallFailed as err:
            if err.error in ("not_in_channel", "channel_not_found"):
                raise ApplicationError(
                    "I'm not a member of this channel. Invite me (/invite) and ask again, or DM me.",
                    err.error,
                    type=SLACK_ERROR,
                    non_retryable=True,
                ) from err
            raise slack_failure(err) from err
        except SlackRateLimited as err:
            raise slack_failure(err) from err
        ts = str(reply["ts"])
        await self._repo.link_thread(
            team_id=inp.team_id,
            channel_id=inp.channel_id,
            thread_ts=ts,
            user_id=inp.user_id,
            session_id=inp.session_id,
        )
        return ts

    @activity.defn
    async def post_notice(self, inp: SlackNotice) -> None:
        await self._pacer.wait(inp.channel_id)
        params: dict[str, str] = {"channel": inp.channel_id, "user": inp.slack_user_id, "text": inp.text}
        if inp.thread_ts:
            params["thread_ts"] = inp.thread_ts
        try:
            await slack_call(self._slack, "chat.postEphemeral", **params)
        except (SlackCallFailed, SlackRateLimited) as err:
            raise slack_failure(err) from err

    def _refusal(self, reason: str) -> str:
        return refusal_text(reason, self._web_base_url)
