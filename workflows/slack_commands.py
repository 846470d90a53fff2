"""SlackCommandWorkflow: ``/keel new``, ``/keel kb`` and ``/keel usage``, answered
ephemerally through the command's ``response_url`` (``/keel ask`` is a SlackTurnWorkflow,
``/keel help`` is answered by the acknowledgement itself)."""

from __future__ import annotations

from temporalio import workflow

from workflows import activity_presets

with workflow.unsafe.imports_passed_through():
    from core.models.slack import SlackCommand, SlackResponse
    from workflows.activity_defs import SlackCommandActivities


@workflow.defn
class SlackCommandWorkflow:
    @workflow.run
    async def run(self, cmd: SlackCommand) -> str:
        text: str = await workflow.execute_activity_method(
            SlackCommandActivities.run_command, cmd, **activity_presets.SLACK_CALL
        )
        await workflow.execute_activity_method(
            SlackCommandActivities.respond,
            SlackResponse(response_url=cmd.response_url, text=text),
            **activity_presets.SLACK_CALL,
        )
        return text
