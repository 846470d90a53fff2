"""The worker SIGKILLed at random points (seeded) while several people chat, some turns
calling a tool with a real side effect: every turn ends exactly once, and so do its
messages, usage rows, audit rows and the tool's side effect. The long run (at least 50
kills) is ``bench/worker_kill_soak.py``; this is the short one."""

from __future__ import annotations

import pytest

from infra.settings import Settings
from tests.fakes.mcp_counter_server import CounterMcpServer
from tests.fakes.openai_server import FakeOpenAI
from tests.support.kill_soak import run_kill_soak

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("empty_allowlist")]


async def test_random_worker_kills_lose_and_double_nothing(
    settings: Settings, llm: FakeOpenAI, counter: CounterMcpServer
) -> None:
    report = await run_kill_soak(settings, llm, counter, users=4, min_turns=3, kills=3, seed=20261201)
    print("\n" + "\n".join(report.lines()))
    assert report.kills == 3
    assert report.turns_sent >= 12 and report.tool_executions_expected >= 4
    assert report.answered_completed == report.turns_sent, report.answered_other
    assert report.exactly_once, report.lines()
    assert report.model_requests >= report.usage_rows_expected  # retried calls are real requests
