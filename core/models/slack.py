"""Payloads of the Slack workflows (docs/slack.md).

What a Slack handler hands to a workflow is what Slack sent (ids and the message
text), never a token. Every later step (who the person is, who else will see the
answer, which Keel session a thread is) is an activity, so it is retried and shows
in the workflow's history.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from core.models.chat import Audience

#: ``dm``: the asker's own permissions; ``channel``: only what every member may read;
#: ``public``: a public channel, only what everyone in the organisation may read; ``guest``,
#: ``external`` (Slack Connect), ``large`` (1,000 members or more): no documents.
VisibilityRule = Literal["dm", "channel", "public", "guest", "external", "large"]


class SlackMessage(BaseModel):
    """A message addressed to the bot: a DM, an @mention, a thread reply, or ``/keel ask``."""

    team_id: str
    channel_id: str
    #: ``im`` for a DM; ``channel``/``group``/``mpim`` otherwise.
    channel_type: str
    slack_user_id: str
    text: str = Field(max_length=40_000)
    #: The message's own ts (for ``/keel ask``: empty; the bot posts the question first).
    ts: str = ""
    #: The thread the answer goes to (the message's thread, or the message itself).
    thread_ts: str = ""
    #: ``event`` (Events API / Socket Mode) or ``command`` (``/keel ask``).
    source: Literal["event", "command"] = "event"
    #: Where ``/keel ask`` may answer when the bot cannot post in the channel.
    response_url: str | None = None


class SlackTurnInput(BaseModel):
    message: SlackMessage
    #: How long the relay may follow the turn (the approval timeout plus the model's time).
    relay_timeout_s: int = 3600


class SlackPrincipal(BaseModel):
    """The Keel user a Slack user acts as (from the user directory)."""

    user_id: str
    email: str | None = None
    display_name: str | None = None
    groups: list[str] = Field(default_factory=list, max_length=500)
    roles: list[str] = Field(default_factory=list)


class SlackTurnPlan(BaseModel):
    """What ``prepare_turn`` decided: who asks, which session, who will see the answer."""

    #: ``ready``, or why nothing reaches the model (the person was told ephemerally).
    status: Literal["ready", "refused"]
    principal: SlackPrincipal | None = None
    session_id: str = ""
    #: Whether the session already had turns (a follow-up in the thread).
    existing: bool = False
    turn_id: str = ""
    #: Where the answer is posted (for ``/keel ask``, the thread of the bot's copy of the question).
    thread_ts: str = ""
    rule: VisibilityRule = "dm"
    audience: Audience | None = None
    #: False when no document may be searched (a guest is in the channel).
    search_knowledge: bool = True
    #: Why the turn was refused (``unknown_user``, ``guest``, ``disabled``, ``rate_limited``, …).
    reason: str | None = None
    #: What the person is told (ephemerally) when refused.
    notice: str | None = None


class ReplyTarget(BaseModel):
    team_id: str
    channel_id: str
    thread_ts: str
    is_im: bool
    #: The asker's Slack id: streaming to a channel names its recipient.
    slack_user_id: str


class RelayInput(BaseModel):
    """Stream one turn's events (Redis) into its Slack thread."""

    turn_id: str
    session_id: str
    target: ReplyTarget
    rule: VisibilityRule
    search_knowledge: bool = True
    #: The asker's Keel id (approval messages say who asked).
    user_id: str


class RelayOutcome(BaseModel):
    status: str
    #: ts of every message of the answer, in order.
    message_ts: list[str] = Field(default_factory=list)
    fallback: bool = False


class DeliverTurnInput(BaseModel):
    plan: SlackTurnPlan
    message: str
    team_id: str
    channel_id: str


class SlackTurnOutcome(BaseModel):
    status: str
    session_id: str = ""
    turn_id: str = ""
    reason: str | None = None


class SlackApprovalClick(BaseModel):
    """An Approve/Deny button click, as the interactivity handler received it."""

    team_id: str
    slack_user_id: str
    channel_id: str
    message_ts: str
    approval_id: str
    approved: bool
    response_url: str | None = None


class SlackApprovalOutcome(BaseModel):
    status: Literal["approved", "denied", "refused"]
    reason: str | None = None


class SlackCommand(BaseModel):
    """``/keel new``, ``/keel kb`` or ``/keel usage`` (``ask`` is a :class:`SlackMessage`)."""

    team_id: str
    channel_id: str
    slack_user_id: str
    name: Literal["new", "kb", "usage"]
    response_url: str
    trigger_id: str


class SlackNotice(BaseModel):
    """A message only one person sees (``chat.postEphemeral``)."""

    team_id: str
    channel_id: str
    slack_user_id: str
    text: str
    thread_ts: str = ""


class QuestionPost(BaseModel):
    """``/keel ask``: the bot posts the question, then answers in its thread."""

    team_id: str
    channel_id: str
    slack_user_id: str
    text: str
    session_id: str
    user_id: str


class SlackFileShare(BaseModel):
    """A file shared with the bot in a DM."""

    team_id: str
    channel_id: str
    slack_user_id: str
    file_id: str
    ts: str
    #: Where its ingestion runs (``KEEL_INGEST_TASK_QUEUE``).
    ingest_task_queue: str = "keel-ingest"


class SlackFileImport(BaseModel):
    """What ``import_file`` did: a document to ingest, one already holding these bytes, or a refusal."""

    status: Literal["ingesting", "duplicate", "refused"]
    document_id: str = ""
    version: int = 0
    filename: str = ""
    #: The Keel user it belongs to.
    user_id: str = ""
    #: What the person is told when refused or duplicate.
    notice: str | None = None


class SlackReply(BaseModel):
    """A post in a thread the person sees (``post_reply``) — the file's fate, for instance."""

    channel_id: str
    thread_ts: str
    text: str


class SlackResponse(BaseModel):
    """An ephemeral answer to a slash command, through its ``response_url``."""

    response_url: str
    text: str
