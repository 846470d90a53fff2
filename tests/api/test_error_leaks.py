"""No exception class name, exception text or database message reaches a client:
not from an unexpected exception in a route, not from a workflow update that failed
with a foreign error type, not from a turn that failed with one."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import httpx
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError

from api.chat_gateway import _update_failure
from api.main import create_app
from api.routes.chat import public_turn
from api.turn_stream import _final_events
from core.errors import public_error
from core.models.chat import AssistantMessage, TurnError, TurnResult
from core.models.documents import DocumentView, FailedOperationView
from infra.settings import Settings

PG_MESSAGE = 'invalid byte sequence for encoding "UTF8": 0x00'
_LEAKS = re.compile(r"Traceback|asyncpg|UTF8|0x00|[A-Z]\w*(Error|Exception)\b")


async def test_an_unexpected_exception_answers_internal_error_without_its_text() -> None:
    app = create_app(Settings())

    async def boom() -> None:
        raise RuntimeError(f"asyncpg.exceptions.CharacterNotInRepertoireError: {PG_MESSAGE}")

    app.add_api_route("/boom", boom)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://keel") as http:
        resp = await http.get("/boom")
    assert resp.status_code == 500
    assert resp.json() == {
        "error": {
            "code": "internal_error",
            "message": "an internal error occurred",
            "request_id": resp.headers["x-request-id"],
        }
    }


def test_a_failed_update_of_a_foreign_type_becomes_internal_error() -> None:
    """The 43 s NUL byte: the update failed with the driver's class name as its type."""
    foreign = ApplicationError(PG_MESSAGE, type="CharacterNotInRepertoireError", non_retryable=True)
    err = _update_failure(WorkflowUpdateFailedError(foreign))
    assert (err.code, err.status) == ("internal_error", 500)
    assert not _LEAKS.search(err.message)
    # Keel's own refusals keep their code and message.
    own = _update_failure(
        WorkflowUpdateFailedError(ApplicationError("message is empty", type="empty_message"))
    )
    assert (own.code, own.status, own.message) == ("empty_message", 422, "message is empty")


def test_a_turn_failed_with_a_foreign_error_type_shows_a_generic_error() -> None:
    failed = TurnResult(
        session_id="s",
        turn_id="t",
        status="failed",
        message=AssistantMessage(content=""),
        error=TurnError(code="CharacterNotInRepertoireError", message=PG_MESSAGE),
    )
    body = public_turn(failed).model_dump_json()
    assert not _LEAKS.search(body), body
    assert json.loads(body)["error"]["code"] == "internal_error"
    events = _final_events(failed, warned=False)
    assert all(not _LEAKS.search(str(e.data)) for e in events), [e.data for e in events]
    assert public_error("budget_exceeded", "the daily budget is spent") == (
        "budget_exceeded",
        "the daily budget is spent",
    )


def test_stored_errors_of_a_foreign_type_are_shown_generically() -> None:
    now = datetime.now(UTC)
    document: dict[str, object] = {
        "id": "doc-1", "kb_id": "kb", "title": "t", "filename": "t.txt", "content_type": None,
        "doc_type": None, "size_bytes": 1, "owner_type": "user", "owner_id": "user:a",
        "visibility": "private", "shared_with": [], "status": "failed",
        "error_code": "UniqueViolationError", "error_message": PG_MESSAGE,
        "chunk_count": 0, "page_count": 0, "created_at": now, "updated_at": now,
    }  # fmt: skip
    view = DocumentView.model_validate(document).model_dump_json()
    assert not _LEAKS.search(view), view
    kept = DocumentView.model_validate(
        {**document, "error_code": "document_corrupt", "error_message": "unreadable"}
    )
    assert (kept.error_code, kept.error_message) == ("document_corrupt", "unreadable")
    operation = FailedOperationView(
        id="op", kind="ingest", resource_id="doc-1", workflow_id="wf", error_code="ConnectError",
        error_message="[Errno 111] Connection refused to 10.0.0.5:5432", status="open", retry_count=0,
        created_at=now, updated_at=now,
    )  # fmt: skip
    # Filtered where it is written out; the attribute keeps what was stored.
    shown = json.loads(operation.model_dump_json())
    assert shown["error_code"] == "internal_error" and "10.0.0.5" not in shown["error_message"]
