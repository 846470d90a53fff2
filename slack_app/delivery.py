"""The Slack turn's and approval click's way into ``ChatSessionWorkflow``: the same
gateway (``api.chat_gateway``) and the same rules as the REST API, run as activities
of the Slack workflows (the handlers only start those workflows)."""

from __future__ import annotations

from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError

from activities.slack_people import SlackPeople
from activities.slack_turns import slack_principal
from api import chat_gateway
from api.errors import ApiError
from core.errors import ErrorCode
from core.models.audit import AuditEntry, AuditEvent
from core.models.slack import DeliverTurnInput, SlackApprovalClick, SlackApprovalOutcome
from core.models.tools import ApprovalDecision
from core.policy.permissions import Permission, is_granted
from core.policy.tools import may_approve, separation_of_duties
from infra.agents import AgentRegistry
from infra.audit.log import AuditLog
from infra.db.tools_repo import ToolsRepository
from infra.settings import Settings


def _failure(err: ApiError) -> ApplicationError:
    return ApplicationError(err.message, type=str(err.code), non_retryable=err.status < 500)


class SlackDeliveryActivities:
    def __init__(
        self,
        *,
        temporal: Client,
        settings: Settings,
        agents: AgentRegistry,
        audit: AuditLog,
        tools_repo: ToolsRepository,
        people: SlackPeople,
    ) -> None:
        self._temporal = temporal
        self._settings = settings
        self._agents = agents
        self._audit = audit
        self._tools = tools_repo
        self._people = people

    @activity.defn
    async def deliver_turn(self, inp: DeliverTurnInput) -> None:
        """The Slack message as the session's ``send_message`` Update (its id is the turn id,
        so a retried activity or a redelivered event never runs the turn twice)."""
        plan = inp.plan
        assert plan.principal is not None
        principal = slack_principal(plan.principal)
        agent = self._agents.get(self._settings.default_agent)
        try:
            await chat_gateway.start_turn(
                self._temporal,
                self._settings,
                principal=principal,
                session_id=plan.session_id,
                message=inp.message,
                turn_id=plan.turn_id,
                search_knowledge=plan.search_knowledge,
                agent=agent,
                existing=plan.existing,
                audience=plan.audience,
            )
        except ApiError as err:
            raise _failure(err) from err
        if not plan.existing:
            await self._audit.record(
                AuditEntry(
                    event=AuditEvent.SESSION_STARTED,
                    user_id=principal.user_id,
                    session_id=plan.session_id,
                    resource_type="session",
                    resource_id=plan.session_id,
                    details={
                        "agent": agent.name,
                        "channel": "slack",
                        "slack_team": inp.team_id,
                        "slack_channel": inp.channel_id,
                        "visibility": plan.rule,
                    },
                    dedupe_key=f"session.started:{plan.session_id}",
                )
            )

    @activity.defn
    async def decide_from_slack(self, click: SlackApprovalClick) -> SlackApprovalOutcome:
        """A button click, decided with the API's rules: the clicker must be a Keel user who
        may decide this approval (with an approver group: a member, not the requester)."""
        person = await self._people.resolve(click.team_id, click.slack_user_id)
        if person.principal is None:
            return SlackApprovalOutcome(
                status="refused", reason="You are not a Keel user, so you cannot decide this."
            )
        principal = slack_principal(person.principal)
        record = await self._tools.approval(click.approval_id)
        if (
            record is None
            or not is_granted(principal, Permission.USE_AGENT)
            or not may_approve(principal, requester=record.requester, approver_group=record.approver_group)
        ):
            return SlackApprovalOutcome(status="refused", reason="You may not decide this approval.")
        refusal = separation_of_duties(
            principal,
            requester=record.requester,
            approver_group=record.approver_group,
            requester_api_key_id=record.requester_api_key_id,
        )
        if refusal is not None:
            return SlackApprovalOutcome(status="refused", reason=f"You cannot decide this: {refusal}")
        if record.status != "pending":
            return SlackApprovalOutcome(status="refused", reason=f"This approval is already {record.status}.")
        try:
            decided = await chat_gateway.decide_approval(
                self._temporal,
                session_id=record.session_id,
                decision=ApprovalDecision(
                    approval_id=record.id,
                    approved=click.approved,
                    decided_by=principal.user_id,
                    decided_by_name=f"<@{click.slack_user_id}>",
                ),
            )
        except ApiError as err:
            if err.code in (ErrorCode.STALE_REQUEST, ErrorCode.NOT_FOUND):
                return SlackApprovalOutcome(
                    status="refused", reason="This approval can no longer be decided."
                )
            raise _failure(err) from err
        await self._audit.record(
            AuditEntry(
                event=AuditEvent.TOOL_APPROVAL_DECIDED,
                user_id=principal.user_id,
                session_id=record.session_id,
                resource_type="tool_approval",
                resource_id=record.id,
                details={
                    "decision": "approve" if click.approved else "deny",
                    "tool": record.tool,
                    "requester": record.requester,
                    "channel": "slack",
                },
                dedupe_key=f"tool.approval_decided:{record.id}",
            )
        )
        return SlackApprovalOutcome(status="approved" if decided.status == "approved" else "denied")
