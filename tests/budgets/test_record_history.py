"""Records ``tests/workflows/histories/v3_budgeted_turns.json`` (replayed by
tests/workflows/test_replay.py with every committed history).

One session under a 1000-token daily budget: a rejected model call (its reservation
is released), a short answer, a long answer that crosses the 80 % warning, and a
message refused by the budget. Record with
``KEEL_RECORD_HISTORIES=1 PYTHONPATH=$PWD .venv/bin/python -m pytest tests/budgets/test_record_history.py``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from temporalio.client import Client

from core.names import chat_workflow_id
from infra.settings import Settings
from tests.conftest import running_platform
from tests.fakes.openai_server import Error, FakeOpenAI, Reply

HISTORY = Path(__file__).parents[1] / "workflows" / "histories" / "v3_budgeted_turns.json"


@pytest.mark.skipif(not os.environ.get("KEEL_RECORD_HISTORIES"), reason="records histories on demand")
async def test_record_budgeted_history(
    budget_settings: Settings, temporal_client: Client, llm: FakeOpenAI
) -> None:
    async with running_platform(budget_settings, temporal_client) as api:
        headers = await api.auth("replay-budget")
        llm.enqueue(
            Error(status=400, message="bad request"), Reply("A short answer."), Reply(" ".join(["ok"] * 820))
        )

        async def send(message: str, session_id: str | None = None) -> dict[str, object]:
            payload: dict[str, object] = {"message": message}
            if session_id:
                payload["session_id"] = session_id
            resp = await api.http.post("/api/v1/chat", json=payload, headers=headers)
            assert resp.status_code == 200, resp.text
            return dict(resp.json())

        rejected = await send("one")
        sid = str(rejected["session_id"])
        assert rejected["status"] == "failed"
        assert (await send("two", sid))["status"] == "completed"
        warned = await send("three", sid)
        assert warned["status"] == "completed" and warned["budget_warning"] is not None
        refused = await send("four", sid)
        assert refused["status"] == "failed" and refused["error"]["code"] == "budget_exceeded"  # type: ignore[index]

        history = await temporal_client.get_workflow_handle(chat_workflow_id(sid)).fetch_history()
        payload = {"workflow_id": history.workflow_id, "history": json.loads(history.to_json())}
        HISTORY.write_text(json.dumps(payload, indent=1) + "\n")
