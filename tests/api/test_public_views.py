"""A route returns the stored record; its public view (the record's base class, the
route's ``response_model``) writes out only the public fields, as FastAPI does it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import TypeAdapter

from api.schemas import DocumentList, SessionDetail, SessionList
from core.models.documents import DocumentView, FailedOperationView
from core.models.ingest import BatchProgress, BatchStatus
from core.models.knowledge import QueryResult, ScoredChunk
from infra.db.chat_repo import MessageRecord, SessionRecord, TurnRecord
from infra.db.knowledge_repo import DocumentRecord, FailedOperationRecord

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def _as_response(model: type[Any], value: object) -> Any:
    """What FastAPI sends for ``value`` under ``response_model=model``."""
    adapter: TypeAdapter[Any] = TypeAdapter(model)
    return adapter.dump_python(adapter.validate_python(value), mode="json")


def _document(**changes: object) -> DocumentRecord:
    fields: dict[str, Any] = {
        "id": "doc-1", "kb_id": "kb", "title": "t", "filename": "t.txt", "content_type": None,
        "doc_type": None, "size_bytes": 1, "sha256": "ab" * 32, "blob_key": "documents/doc-1",
        "source": "upload", "owner_type": "user", "owner_id": "user:a", "visibility": "private",
        "shared_with": [], "status": "ready", "error_code": None, "error_message": None,
        "chunk_count": 3, "page_count": 1, "created_by": "a", "created_at": NOW, "updated_at": NOW,
        "version": 2,
    }  # fmt: skip
    return DocumentRecord(**{**fields, **changes})


def test_a_document_shows_its_view_fields_only() -> None:
    shown = _as_response(DocumentView, _document())
    assert list(shown) == list(DocumentView.model_fields)
    assert shown["version"] == 2 and shown["chunk_count"] == 3
    listed = _as_response(DocumentList, DocumentList(documents=[_document()]))
    assert listed["documents"] == [shown]


def test_a_stored_foreign_error_is_written_out_generically_and_kept_on_the_record() -> None:
    record = _document(status="failed", error_code="UniqueViolationError", error_message="duplicate key")
    shown = _as_response(DocumentView, record)
    assert (shown["error_code"], shown["error_message"]) == ("internal_error", "an internal error occurred")
    assert record.error_code == "UniqueViolationError"
    known = _as_response(DocumentView, _document(status="failed", error_code="document_corrupt"))
    assert (known["error_code"], known["error_message"]) == ("document_corrupt", None)
    op = FailedOperationRecord(
        id="op", kind="ingest", resource_id="doc-1", workflow_id="wf", error_code="ConnectError",
        error_message="refused by 10.0.0.5", status="open", retry_count=0, created_at=NOW, updated_at=NOW,
    )  # fmt: skip
    assert _as_response(FailedOperationView, op)["error_code"] == "internal_error"


def test_a_session_shows_neither_its_owner_nor_message_metadata() -> None:
    session = SessionRecord(
        id="s", user_id="alice", title="hi", agent="default", turn_count=1, prompt_tokens=5,
        completion_tokens=7, created_at=NOW, updated_at=NOW,
    )  # fmt: skip
    message = MessageRecord(
        id=1, turn_id="t", seq=0, role="user", content="hi", metadata={"x": 1}, created_at=NOW
    )
    turn = TurnRecord(
        id="t", session_id="s", user_id="alice", status="completed", model="m", prompt_tokens=5,
        completion_tokens=7, error_code=None, error_message=None, result={"secret": 1},
        created_at=NOW, completed_at=NOW,
    )  # fmt: skip
    listed = _as_response(SessionList, SessionList(sessions=[session]))
    assert "user_id" not in listed["sessions"][0] and "prompt_tokens" not in listed["sessions"][0]
    detail = _as_response(
        SessionDetail, SessionDetail(**session.model_dump(), messages=[message], turns=[turn])
    )
    assert "user_id" not in detail and detail["prompt_tokens"] == 5
    assert set(detail["messages"][0]) == {"id", "turn_id", "role", "content", "created_at"}
    assert set(detail["turns"][0]) == {"id", "status", "error_code", "created_at", "completed_at"}


def test_a_query_hit_and_a_batch_show_their_public_fields() -> None:
    hit = ScoredChunk(
        chunk_id="c", doc_id="d", kb_id="k", title="t", text="x", page=None, chunk_index=0,
        score=0.5, similarity=0.5, owner_id="user:a", version=3,
    )  # fmt: skip
    assert list(_as_response(QueryResult, hit)) == list(QueryResult.model_fields)
    progress = BatchProgress(
        batch_id="b", total=2, processing=1, ready=1, failed=0, done=False, failed_document_ids=[]
    )
    assert list(_as_response(BatchStatus, progress)) == list(BatchStatus.model_fields)


def test_a_turns_stored_foreign_error_code_is_written_out_generically() -> None:
    session = SessionRecord(
        id="s", user_id="alice", title="hi", agent="default", turn_count=2, prompt_tokens=0,
        completion_tokens=0, created_at=NOW, updated_at=NOW,
    )  # fmt: skip
    turns = [
        TurnRecord(
            id=turn_id,
            session_id="s",
            user_id="alice",
            status="failed",
            model=None,
            prompt_tokens=0,
            completion_tokens=0,
            error_code=code,
            error_message="boom",
            result=None,
            created_at=NOW,
            completed_at=NOW,
        )
        for turn_id, code in (("t1", "CharacterNotInRepertoireError"), ("t2", "budget_exceeded"))
    ]
    detail = _as_response(SessionDetail, SessionDetail(**session.model_dump(), messages=[], turns=turns))
    assert [t["error_code"] for t in detail["turns"]] == ["internal_error", "budget_exceeded"]
