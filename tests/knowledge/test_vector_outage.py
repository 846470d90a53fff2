"""Qdrant unavailable (a Qdrant server URL nobody answers on: the real qdrant-client
path, refused connections): a turn still answers, without sources, says so
(``notice: retrieval_unavailable`` and the note in the answer, the prompt tells the model
not to claim it read documents), and after the threshold the vector circuit opens, so
later turns stop trying the index (``keel_circuit_rejections_total{dependency="vector"}``)."""

from __future__ import annotations

import uuid

from prometheus_client import REGISTRY
from temporalio.client import Client

from infra.circuit import Circuit, CircuitConfig
from infra.redis_client import create_redis
from infra.settings import Settings
from tests.conftest import free_port, running_platform
from tests.fakes.openai_server import FakeOpenAI
from tests.knowledge.test_documents_api import _kb_ids, upload, wait_settled


def _rejections() -> float:
    return REGISTRY.get_sample_value("keel_circuit_rejections_total", {"dependency": "vector"}) or 0.0


async def test_chat_answers_without_sources_when_qdrant_is_down_and_the_circuit_opens(
    settings: Settings, temporal_client: Client, llm: FakeOpenAI
) -> None:
    down = settings.model_copy(
        update={
            "qdrant_url": f"http://127.0.0.1:{free_port()}",  # nothing listens there
            "qdrant_path": None,
            "circuit_vector_failures": 2,
            "circuit_vector_window_s": 60.0,
            "circuit_vector_open_s": 60.0,
        }
    )
    redis = create_redis(settings.redis_url or "")
    circuit = Circuit("vector", CircuitConfig(), redis=redis, namespace=settings.circuit_namespace)
    user = f"qdrant-down-{uuid.uuid4().hex[:8]}"
    try:
        async with running_platform(settings, temporal_client) as platform:  # Qdrant still up
            headers = await platform.auth(user)
            kb = (await _kb_ids(platform, headers))["personal"]
            doc = await upload(platform, headers, kb, "notes.txt", b"The release train leaves on Fridays.")
            assert (await wait_settled(platform, headers, kb, doc))["status"] == "ready"
        async with running_platform(down, temporal_client) as platform:  # ... and now it is not
            headers = await platform.auth(user)
            answers = []
            for n in range(3):
                resp = await platform.http.post(
                    "/api/v1/chat",
                    json={"message": f"when does the release train leave? {n}"},
                    headers=headers,
                )
                assert resp.status_code == 200, resp.text
                answers.append(resp.json())
                if n == 1:
                    assert await circuit.state() == "open"  # 2 failed searches (one turn, 2 attempts)
                    rejected_before = _rejections()
            assert _rejections() == rejected_before + 1  # the third turn did not try the index
    finally:
        await redis.aclose()
    for body in answers:
        assert body["status"] == "completed", body
        assert body["notice"] == "retrieval_unavailable"
        assert body["message"]["citations"] == []
        assert "knowledge search" in body["message"]["content"].lower()
    system = llm.requests[-1]["messages"][0]["content"]
    assert "Knowledge search is unavailable for this answer" in system
