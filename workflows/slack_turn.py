"""The Slack workflows. A Slack handler only starts one of these, with an id made from
the team and the message (or click), so Slack's redeliveries are the same workflow.

``SlackTurnWorkflow``: one message to the bot (DM, @mention, ``/keel ask``):
prepare (who asks, which session, who will see the answer) → deliver it to the
session's ``ChatSessionWorkflow`` as the ``send_message`` Update (the turn id comes
from the message) → relay the turn's events into the thread.

``SlackApprovalWorkflow``: one Approve/Deny click, decided with the API's rules.
"""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

from workflows import activity_presets, search_attributes

with workflow.unsafe.imports_passed_through():
    from core.models.slack import (
        DeliverTurnInput,
        QuestionPost,
        RelayInput,
        ReplyTarget,
        SlackApprovalClick,
        SlackApprovalOutcome,
        SlackMessage,
        SlackNotice,
        SlackResponse,
        SlackTurnInput,
        SlackTurnOutcome,
    )
    from workflows.activity_defs import (
        SlackCommandActivities,
        SlackDeliveryActivities,
        SlackRelayActivities,
        SlackTurnActivities,
    )


def _cause(err: ActivityError) -> str:
    cause = err.cause
    if isinstance(cause, ApplicationError):
        return cause.message
    return "something went wrong"


@workflow.defn
class SlackTurnWorkflow:
    @workflow.run
    async def run(self, inp: SlackTurnInput) -> SlackTurnOutcome:
        msg = inp.message
        try:
            plan = await workflow.execute_activity_method(
                SlackTurnActivities.prepare_turn, msg, **activity_presets.SLACK_CALL
            )
        except ActivityError as err:  # Slack or the directory kept failing: say so, never go quiet
            workflow.logger.warning("slack turn could not be prepared: %s", _cause(err))
            await self._notice(msg, "I could not take this message right now; please try again in a minute.")
            return SlackTurnOutcome(status="failed", reason=_cause(err))
        if plan.status == "refused" or plan.principal is None:
            await self._notice(msg, plan.notice or "I can't answer this request.")
            return SlackTurnOutcome(status="refused", reason=plan.reason)
        workflow.upsert_search_attributes(
            search_attributes.updates_for_kind(user_id=plan.principal.user_id, kind="slack")
        )
        try:
            if msg.source == "command":
                thread_ts = await workflow.execute_activity_method(
                    SlackTurnActivities.post_question,
                    QuestionPost(
                        team_id=msg.team_id,
                        channel_id=msg.channel_id,
                        slack_user_id=msg.slack_user_id,
                        text=msg.text,
                        session_id=plan.session_id,
                        user_id=plan.principal.user_id,
                    ),
                    **activity_presets.SLACK_CALL,
                )
                plan = plan.model_copy(update={"thread_ts": thread_ts})
            await workflow.execute_activity_method(
                SlackDeliveryActivities.deliver_turn,
                DeliverTurnInput(plan=plan, message=msg.text, team_id=msg.team_id, channel_id=msg.channel_id),
                **activity_presets.DATABASE,
            )
        except ActivityError as err:
            await self._notice(msg, f"I could not take this message: {_cause(err)}")
            return SlackTurnOutcome(status="failed", session_id=plan.session_id, reason=_cause(err))
        target = ReplyTarget(
            team_id=msg.team_id,
            channel_id=msg.channel_id,
            thread_ts=plan.thread_ts,
            is_im=msg.channel_type == "im",
            slack_user_id=msg.slack_user_id,
        )
        try:
            relayed = await workflow.execute_activity_method(
                SlackRelayActivities.relay_reply,
                RelayInput(
                    turn_id=plan.turn_id,
                    session_id=plan.session_id,
                    target=target,
                    rule=plan.rule,
                    search_knowledge=plan.search_knowledge,
                    user_id=plan.principal.user_id,
                ),
                **activity_presets.slack_relay(timeout_s=inp.relay_timeout_s),
            )
        except ActivityError as err:  # Slack refused the answer: say so where we still can
            workflow.logger.warning("slack reply failed: %s", _cause(err))
            await self._notice(
                msg, f"I could not post my answer here: {_cause(err)}", thread_ts=plan.thread_ts
            )
            return SlackTurnOutcome(
                status="failed", session_id=plan.session_id, turn_id=plan.turn_id, reason=_cause(err)
            )
        return SlackTurnOutcome(status=relayed.status, session_id=plan.session_id, turn_id=plan.turn_id)

    async def _notice(self, msg: SlackMessage, text: str, *, thread_ts: str | None = None) -> None:
        """Tell the asker alone: ``/keel ask`` through its ``response_url`` (it works even
        where the bot is not in the channel), a message ephemerally in its thread."""
        try:
            if msg.source == "command" and msg.response_url:
                await workflow.execute_activity_method(
                    SlackCommandActivities.respond,
                    SlackResponse(response_url=msg.response_url, text=text),
                    **activity_presets.SLACK_CALL,
                )
                return
            await workflow.execute_activity_method(
                SlackTurnActivities.post_notice,
                SlackNotice(
                    team_id=msg.team_id,
                    channel_id=msg.channel_id,
                    slack_user_id=msg.slack_user_id,
                    text=text,
                    thread_ts=msg.thread_ts if thread_ts is None else thread_ts,
                ),
                **activity_presets.SLACK_CALL,
            )
        except ActivityError as err:  # nothing more to tell anyone; the history keeps it
            workflow.logger.warning("slack notice failed: %s", _cause(err))


@workflow.defn
class SlackApprovalWorkflow:
    @workflow.run
    async def run(self, click: SlackApprovalClick) -> SlackApprovalOutcome:
        outcome: SlackApprovalOutcome = await workflow.execute_activity_method(
            SlackDeliveryActivities.decide_from_slack, click, **activity_presets.DATABASE
        )
        if outcome.status == "refused":  # told to the clicker alone, through the click's response_url
            text = outcome.reason or "You cannot decide this approval."
            try:
                if click.response_url:
                    await workflow.execute_activity_method(
                        SlackCommandActivities.respond,
                        SlackResponse(response_url=click.response_url, text=text),
                        **activity_presets.SLACK_CALL,
                    )
                else:
                    await workflow.execute_activity_method(
                        SlackTurnActivities.post_notice,
                        SlackNotice(
                            team_id=click.team_id,
                            channel_id=click.channel_id,
                            slack_user_id=click.slack_user_id,
                            text=text,
                        ),
                        **activity_presets.SLACK_CALL,
                    )
            except ActivityError as err:
                workflow.logger.warning("slack notice failed: %s", _cause(err))
        return outcome
