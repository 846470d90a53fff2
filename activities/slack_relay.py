"""Stream one turn's events (its Redis stream, the same one ``/chat/stream`` relays)
into its Slack thread.

The answer streams with ``chat.startStream`` / ``appendStream`` / ``stopStream``; where
streaming is refused, or a stream stops being one (``message_not_in_streaming_state``,
Slack's streaming window ran out), it goes on as one message rewritten with paced
``chat.update``. An answer longer than ``KEEL_SLACK_MESSAGE_MAX_CHARS`` goes on in the
next message; messages the final answer no longer needs (a retried model call answered
shorter than the broken one had streamed) are deleted. ``assistant.threads.setStatus``
says what the agent does meanwhile. It ends with the sources (linked to the web UI) and
which visibility rule applied.
Approval requests are posted, and rewritten once decided, by ``slack_approval_posts``.

Every write waits for the channel's pace (``ChannelPacer``). A 429 fails the attempt
with Slack's ``Retry-After`` as the next retry delay; the retry replays the turn's events
from the start and, from the heartbeat checkpoint, knows what Slack already shows.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from typing import Any

import structlog
from pydantic import BaseModel, Field
from slack_sdk.web.async_client import AsyncWebClient
from temporalio import activity

from activities.slack_approval_posts import ApprovalPosts, Approvers, PostedApproval
from activities.slack_errors import slack_failure
from activities.slack_format import (
    answer_blocks,
    footer_blocks,
    neutralize,
    notification_text,
    split_text,
)
from core.errors import public_error
from core.models.chat import Citation, TurnResult
from core.models.slack import RelayInput, RelayOutcome, ReplyTarget
from core.models.tools import ApprovalView
from infra.slack_web import ChannelPacer, SlackCallFailed, SlackRateLimited, slack_call
from infra.turn_events import TurnEventStream

log = structlog.get_logger(__name__)

_STREAM_GONE = "message_not_in_streaming_state"
_HEARTBEAT_S = 5.0
#: Silence after which a relay checks whether the turn's events still exist.
_LOST_AFTER_S = 120.0
#: Slack clears a status after 2 minutes without a message; refresh before that.
_STATUS_REFRESH_S = 90.0


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class ShownMessage(BaseModel):
    ts: str
    mode: str  # "stream" | "update"
    shown_len: int = 0
    shown_hash: str = _digest("")
    closed: bool = False


class RelayCheckpoint(BaseModel):
    """What Slack already shows; heartbeat details, so a retry does not post twice."""

    messages: list[ShownMessage] = Field(default_factory=list)
    approvals: dict[str, list[PostedApproval]] = Field(default_factory=dict)
    decided: list[str] = Field(default_factory=list)
    streaming_refused: bool = False
    done: bool = False


class _Turn:
    """The answer as the events so far describe it."""

    def __init__(self) -> None:
        self.steps: dict[int, str] = {}
        self.citations: dict[str, Citation] = {}
        self.final: str | None = None
        self.result: TurnResult | None = None
        self.status = "running"

    @property
    def text(self) -> str:
        if self.final is not None:
            return self.final
        return "\n\n".join(t for _s, t in sorted(self.steps.items()) if t)


class SlackRelayActivities:
    def __init__(
        self,
        *,
        slack: AsyncWebClient,
        events: TurnEventStream,
        pacer: ChannelPacer,
        approvers: Approvers,
        web_base_url: str,
        max_chars: int,
        post_interval_s: float,
    ) -> None:
        self._slack = slack
        self._events = events
        self._pacer = pacer
        self._approvers = approvers
        self._web_base_url = web_base_url
        self._max_chars = max_chars
        self._interval_s = post_interval_s

    @activity.defn
    async def relay_reply(self, inp: RelayInput) -> RelayOutcome:
        details = activity.info().heartbeat_details
        checkpoint = RelayCheckpoint.model_validate(details[0]) if details else RelayCheckpoint()
        relay = _Relay(self, inp, checkpoint)
        beat = asyncio.create_task(_heartbeat(checkpoint))
        try:
            return await relay.run()
        except (SlackCallFailed, SlackRateLimited) as err:
            activity.heartbeat(checkpoint.model_dump(mode="json"))
            raise slack_failure(err) from err
        finally:
            beat.cancel()

    async def call(self, pace_channel: str, method: str, **params: Any) -> dict[str, Any]:
        if method.startswith("chat."):
            await self._pacer.wait(pace_channel)
        return await slack_call(self._slack, method, **params)


async def _heartbeat(checkpoint: RelayCheckpoint) -> None:
    while True:
        activity.heartbeat(checkpoint.model_dump(mode="json"))
        await asyncio.sleep(_HEARTBEAT_S)


class _Relay:
    def __init__(self, owner: SlackRelayActivities, inp: RelayInput, checkpoint: RelayCheckpoint) -> None:
        self._o = owner
        self._inp = inp
        self._t: ReplyTarget = inp.target
        self._cp = checkpoint
        self._turn = _Turn()
        self._status_at = 0.0
        self._status = ""
        self._approvals = ApprovalPosts(
            call=owner.call,
            target=inp.target,
            approvers=owner._approvers,
            approvals=checkpoint.approvals,
            decided=checkpoint.decided,
        )

    async def run(self) -> RelayOutcome:
        after, last_show, shown_text = "0-0", 0.0, ""
        last_event = time.monotonic()
        while not self._cp.done:
            batch = await self._o._events.read(self._inp.turn_id, after=after, block_ms=1000)
            for event in batch:
                after = event.id
                await self._on(event.event, event.data)
            if batch:
                last_event = time.monotonic()
            elif time.monotonic() - last_event > _LOST_AFTER_S and await self._lost():
                break
            if self._turn.status != "running":
                break
            text = self._turn.text
            if text != shown_text and time.monotonic() - last_show >= self._o._interval_s:
                await self._show(text, final=False)
                shown_text, last_show = text, time.monotonic()
            elif not text and time.monotonic() - self._status_at > _STATUS_REFRESH_S and self._status:
                await self._set_status(self._status)
        if not self._cp.done:
            await self._show(self._turn.text, final=True)
            await self._set_status("")
            self._cp.done = True
        return RelayOutcome(
            status=self._turn.status,
            message_ts=[m.ts for m in self._cp.messages],
            fallback=any(m.mode == "update" for m in self._cp.messages),
        )

    async def _lost(self) -> bool:
        """The turn's events are gone (expired, or Redis lost them) and no approval of ours
        waits (a decision would write new ones): finish with what is known."""
        if self._approvals.waiting or await self._o._events.exists(self._inp.turn_id):
            return False
        log.warning("slack.turn_events_lost", turn_id=self._inp.turn_id)
        self._turn.final = (self._turn.text + "\n\n" if self._turn.text else "") + (
            "⚠️ I lost track of this answer here; its full text is in Keel."
        )
        self._turn.status = "unknown"
        return True

    # -- events -------------------------------------------------------------- #
    async def _on(self, event: str, data: dict[str, Any]) -> None:
        turn = self._turn
        if event == "turn.started":
            await self._set_status("is thinking…")
        elif event == "citation":
            citation = Citation.model_validate({k: v for k, v in data.items() if k != "turn_id"})
            turn.citations.setdefault(citation.chunk_id, citation)
        elif event == "message.delta":
            step = int(data.get("step", 0))
            turn.steps[step] = turn.steps.get(step, "") + str(data.get("delta", ""))
        elif event == "message.reset":
            turn.steps[int(data.get("step", 0))] = ""
        elif event == "approval.required":
            view = ApprovalView.model_validate(data)
            await self._set_status(f"is waiting for approval to run {view.tool}…")
            await self._approvals.request(view)
        elif event == "approval.decided":
            await self._approvals.rewrite(data)
        elif event == "turn.completed":
            result = TurnResult.model_validate(data)
            turn.result = result
            turn.final = result.message.content
            for c in result.message.citations:
                turn.citations.setdefault(c.chunk_id, c)
            turn.status = result.status
        elif event == "error":
            code, message = public_error(str(data.get("code", "")), str(data.get("message", "")))
            turn.final = (
                turn.text + "\n\n" if turn.text else ""
            ) + f"⚠️ I could not finish this answer: {message}"
            turn.status = "cancelled" if code == "cancelled" else "failed"

    async def _set_status(self, status: str) -> None:
        self._status, self._status_at = status, time.monotonic()
        try:
            await self._o.call(
                self._t.channel_id,
                "assistant.threads.setStatus",
                channel_id=self._t.channel_id,
                thread_ts=self._t.thread_ts,
                status=status,
            )
        except SlackCallFailed as err:  # a status is a courtesy: say so in the log, go on
            log.warning("slack.status_failed", error=err.error, channel=self._t.channel_id)

    # -- the answer ---------------------------------------------------------- #
    async def _show(self, text: str, *, final: bool) -> None:
        text = neutralize(text)
        if not text and not final:
            return
        chunks = split_text(text or "…", self._o._max_chars)
        for i, chunk in enumerate(chunks):
            last = i == len(chunks) - 1
            close = final or not last
            footer = self._footer() if final and last else None
            await self._sync(i, chunk, close=close, footer=footer)
        if final:
            await self._retract(keep=len(chunks))

    def _footer(self) -> list[dict[str, Any]]:
        return footer_blocks(
            list(self._turn.citations.values()),
            rule=self._inp.rule,
            web_base_url=self._o._web_base_url,
            searched=self._inp.search_knowledge,
        )

    async def _sync(self, i: int, chunk: str, *, close: bool, footer: list[dict[str, Any]] | None) -> None:
        if i >= len(self._cp.messages):
            await self._open(chunk)
            if not close:
                return
        msg = self._cp.messages[i]
        if msg.closed:
            if msg.shown_hash != _digest(chunk):
                await self._update(msg, chunk, footer)
            return
        if msg.mode == "stream" and await self._stream_on(msg, chunk, close=close, footer=footer):
            return
        if close or msg.shown_hash != _digest(chunk):
            await self._update(msg, chunk, footer)
            msg.closed = close

    async def _stream_on(
        self, msg: ShownMessage, chunk: str, *, close: bool, footer: list[dict[str, Any]] | None
    ) -> bool:
        """Append the new text to the stream (and stop it when ``close``); False when the
        stream cannot go on (Slack ended it, or the text changed under it): then the
        message is rewritten with ``chat.update`` from now on."""
        prefix_ok = len(chunk) >= msg.shown_len and _digest(chunk[: msg.shown_len]) == msg.shown_hash
        try:
            if not prefix_ok:  # a retried model call replaced the text
                await self._stop_quietly(msg)
            elif close:
                params: dict[str, Any] = {"channel": self._t.channel_id, "ts": msg.ts}
                if extra := chunk[msg.shown_len :]:
                    params["markdown_text"] = extra
                if footer:
                    params["blocks"] = footer
                await self._o.call(self._t.channel_id, "chat.stopStream", **params)
                self._mark(msg, chunk, closed=True)
                return True
            else:
                if extra := chunk[msg.shown_len :]:
                    await self._o.call(
                        self._t.channel_id,
                        "chat.appendStream",
                        channel=self._t.channel_id,
                        ts=msg.ts,
                        markdown_text=extra,
                    )
                    self._mark(msg, chunk)
                return True
        except SlackCallFailed as err:
            if err.error != _STREAM_GONE:
                raise
            log.info("slack.stream_expired", ts=msg.ts, channel=self._t.channel_id)
        msg.mode = "update"
        return False

    async def _open(self, chunk: str) -> None:
        if not self._cp.streaming_refused:
            params: dict[str, Any] = {
                "channel": self._t.channel_id,
                "thread_ts": self._t.thread_ts,
                "markdown_text": chunk,
                "unfurl_links": False,
                "unfurl_media": False,
            }
            if not self._t.is_im:
                params["recipient_user_id"] = self._t.slack_user_id
                params["recipient_team_id"] = self._t.team_id
            try:
                reply = await self._o.call(self._t.channel_id, "chat.startStream", **params)
                self._cp.messages.append(ShownMessage(ts=str(reply["ts"]), mode="stream"))
                self._mark(self._cp.messages[-1], chunk)
                return
            except SlackCallFailed as err:
                if err.error in ("channel_not_found", "not_in_channel", "invalid_auth", "token_revoked"):
                    raise
                log.warning("slack.stream_refused", error=err.error, channel=self._t.channel_id)
                self._cp.streaming_refused = True
        reply = await self._o.call(
            self._t.channel_id,
            "chat.postMessage",
            channel=self._t.channel_id,
            thread_ts=self._t.thread_ts,
            text=notification_text(chunk),
            blocks=answer_blocks(chunk),
            unfurl_links=False,
            unfurl_media=False,
        )
        self._cp.messages.append(ShownMessage(ts=str(reply["ts"]), mode="update"))
        self._mark(self._cp.messages[-1], chunk)

    async def _update(self, msg: ShownMessage, chunk: str, footer: list[dict[str, Any]] | None) -> None:
        await self._o.call(
            self._t.channel_id,
            "chat.update",
            channel=self._t.channel_id,
            ts=msg.ts,
            text=notification_text(chunk),
            blocks=answer_blocks(chunk) + (footer or []),
        )
        self._mark(msg, chunk)

    async def _retract(self, *, keep: int) -> None:
        """Delete the messages past ``keep``: they showed text the final answer no longer
        has (a retried model call answered shorter than the broken one had streamed)."""
        while len(self._cp.messages) > keep:
            msg = self._cp.messages[-1]
            if msg.mode == "stream" and not msg.closed:
                await self._stop_quietly(msg)
            try:
                await self._o.call(self._t.channel_id, "chat.delete", channel=self._t.channel_id, ts=msg.ts)
            except SlackCallFailed as err:
                if err.error != "message_not_found":  # already gone (a retry after the delete)
                    raise
            self._cp.messages.pop()

    async def _stop_quietly(self, msg: ShownMessage) -> None:
        try:
            await self._o.call(self._t.channel_id, "chat.stopStream", channel=self._t.channel_id, ts=msg.ts)
        except SlackCallFailed as err:
            if err.error != _STREAM_GONE:
                raise

    @staticmethod
    def _mark(msg: ShownMessage, chunk: str, *, closed: bool | None = None) -> None:
        msg.shown_len, msg.shown_hash = len(chunk), _digest(chunk)
        if closed is not None:
            msg.closed = closed
