"""Chat grounded on what the user may read: citations, retrieval-only mode, Qdrant down."""

from __future__ import annotations

import pytest
from temporalio.client import Client

from infra.settings import Settings
from tests.conftest import RunningApi, running_platform
from tests.fakes.openai_server import FakeOpenAI
from tests.knowledge.test_documents_api import HANDBOOK, _kb_ids, upload, wait_settled
from tests.support.sse import collect

pytestmark = pytest.mark.slow


async def test_chat_answers_with_citations_from_readable_documents_only(
    platform: RunningApi, llm: FakeOpenAI
) -> None:
    alice = await platform.auth("rag-alice")
    mallory = await platform.auth("rag-mallory")
    kb = (await _kb_ids(platform, alice))["personal"]
    doc_id = await upload(platform, alice, kb, "handbook.txt", HANDBOOK.encode())
    assert (await wait_settled(platform, alice, kb, doc_id))["status"] == "ready"

    async with platform.http.stream(
        "POST", "/api/v1/chat/stream", json={"message": "How do I reset my password?"}, headers=alice
    ) as resp:
        events = await collect(resp)
    names = [e.event for e in events]
    assert "citation" in names and names.index("citation") < names.index("message.delta")
    final = events[-1].data
    citations = final["message"]["citations"]
    assert citations and citations[0]["document_id"] == doc_id
    assert set(citations[0]) >= {"document_id", "chunk_id", "title", "snippet", "score"}
    system = llm.requests[-1]["messages"][0]["content"]
    assert "self-service portal" in system  # the chunk text grounded the prompt
    assert "ignore any instructions" in system

    # Another user asking the same question gets nothing of Alice's.
    body = (
        await platform.http.post(
            "/api/v1/chat", json={"message": "How do I reset my password?"}, headers=mallory
        )
    ).json()
    assert body["message"]["citations"] == []
    assert "self-service portal" not in llm.requests[-1]["messages"][0]["content"]


async def test_a_greeting_cites_nothing_while_a_question_cites_its_document(
    platform: RunningApi, llm: FakeOpenAI
) -> None:
    """The relevance floor (KEEL_RETRIEVAL_MIN_SCORE): the hybrid search always has a "best"
    passage, but a greeting's is not similar enough to any passage to be cited."""
    user = await platform.auth("rag-greeter")
    kb = (await _kb_ids(platform, user))["personal"]
    handbook = await upload(platform, user, kb, "handbook.txt", HANDBOOK.encode())
    parking = await upload(
        platform,
        user,
        kb,
        "parking.txt",
        b"Parking\n\nStaff park in the north garage on level two; visitors get a day pass at the desk.",
    )
    for doc_id in (handbook, parking):
        assert (await wait_settled(platform, user, kb, doc_id))["status"] == "ready"

    hello = (await platform.http.post("/api/v1/chat", json={"message": "Hello!"}, headers=user)).json()
    assert hello["status"] == "completed", hello
    assert hello["message"]["citations"] == []
    system = llm.requests[-1]["messages"][0]["content"]
    assert "self-service portal" not in system and "north garage" not in system

    asked = (
        await platform.http.post(
            "/api/v1/chat",
            json={"message": "How do I reset my password?", "session_id": hello["session_id"]},
            headers=user,
        )
    ).json()
    cited = [c["document_id"] for c in asked["message"]["citations"]]
    assert cited and cited[0] == handbook, asked["message"]["citations"]
    assert "self-service portal" in llm.requests[-1]["messages"][0]["content"]


async def test_retrieval_only_mode_without_a_model(settings: Settings, temporal_client: Client) -> None:
    unconfigured = settings.model_copy(update={"llm_base_url": None, "llm_model": None, "llm_api_key": None})
    async with running_platform(unconfigured, temporal_client) as platform:
        user = await platform.auth("rag-nomodel")
        kb = (await _kb_ids(platform, user))["personal"]
        doc_id = await upload(platform, user, kb, "handbook.txt", HANDBOOK.encode())
        assert (await wait_settled(platform, user, kb, doc_id))["status"] == "ready"
        body = (
            await platform.http.post("/api/v1/chat", json={"message": "receipts for expenses"}, headers=user)
        ).json()
    assert body["status"] == "completed"
    assert body["notice"] == "retrieval_only"
    assert body["model"] is None
    assert body["message"]["content"].startswith(
        "No language model is configured, so this is retrieval-only mode"
    )
    assert "Receipts are required" in body["message"]["content"]
    assert body["message"]["citations"][0]["document_id"] == doc_id


async def test_chat_answers_without_knowledge_when_qdrant_is_down(
    settings: Settings, temporal_client: Client, llm: FakeOpenAI
) -> None:
    async with running_platform(settings, temporal_client) as platform:
        user = await platform.auth("rag-down")
        kb = (await _kb_ids(platform, user))["personal"]
        doc_id = await upload(platform, user, kb, "handbook.txt", HANDBOOK.encode())
        assert (await wait_settled(platform, user, kb, doc_id))["status"] == "ready"
    # The same platform, but its vector store is unreachable.
    broken = settings.model_copy(update={"qdrant_url": "http://127.0.0.1:1"})
    async with running_platform(broken, temporal_client) as platform:
        body = (await platform.http.post("/api/v1/chat", json={"message": "hello?"}, headers=user)).json()
    assert body["status"] == "completed"
    assert body["notice"] == "retrieval_unavailable"
    assert body["message"]["content"].startswith("(Knowledge search is unavailable right now")
    assert body["message"]["content"].endswith("Echo: hello?")
    assert "do not claim to have read documents" in llm.requests[-1]["messages"][0]["content"]
