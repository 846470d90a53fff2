"""ToolDiscoveryWorkflow (id ``tools-{server_id}``): connect to a newly allowlisted
tool server and store its tools. The API never talks to MCP servers itself."""

from __future__ import annotations

from temporalio import workflow

from workflows import activity_presets

with workflow.unsafe.imports_passed_through():
    from workflows.activity_defs import ToolActivities


@workflow.defn
class ToolDiscoveryWorkflow:
    @workflow.run
    async def run(self, server_id: str) -> list[str]:
        return await workflow.execute_activity_method(
            ToolActivities.discover_tools,
            server_id,
            **activity_presets.tool_call(timeout_s=60, max_retries=1),
        )
