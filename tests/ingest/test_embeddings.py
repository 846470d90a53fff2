"""The embeddings port: the bundled local model (offline) and the OpenAI adapter
against a small local server speaking the OpenAI embeddings wire protocol."""

from __future__ import annotations

import base64
import math
import socket
import struct
import threading
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import openai
import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from core.errors import ErrorCode, KeelError
from infra.embeddings import (
    BUNDLED_MODEL_NAME,
    DIMENSION_PROBE_TEXT,
    Embedder,
    LocalEmbedder,
    OpenAIEmbedder,
    create_embedder,
)
from infra.settings import Settings


def _dot(a: Sequence[float], b: Sequence[float]) -> float:
    return math.fsum(x * y for x, y in zip(a, b, strict=True))


def _norm(v: Sequence[float]) -> float:
    return math.sqrt(_dot(v, v))


# ---------------------------------------------------------------- local model
@pytest.fixture(scope="module")
async def local() -> LocalEmbedder:
    embedder = LocalEmbedder(batch_size=4)
    await embedder.ensure_dimension()
    return embedder


async def test_local_dimension_and_name(local: LocalEmbedder) -> None:
    assert local.dimension == 384
    assert await local.ensure_dimension() == 384
    assert local.model_name == BUNDLED_MODEL_NAME


async def test_local_vectors_are_normalised(local: LocalEmbedder) -> None:
    vectors = await local.embed_documents(["Keel runs durable agents.", "x", ""])
    assert len(vectors) == 3
    for v in vectors:
        assert len(v) == 384
        assert all(isinstance(x, float) for x in v)
        assert abs(_norm(v) - 1.0) < 1e-5
    assert abs(_norm(await local.embed_query("where is the VPN guide?")) - 1.0) < 1e-5


async def test_local_is_semantically_sensible(local: LocalEmbedder) -> None:
    pw, change, revenue = await local.embed_documents(
        ["reset my password", "how do I change my password", "quarterly revenue grew"]
    )
    close, far = _dot(pw, change), _dot(pw, revenue)
    assert close > far + 0.3, (close, far)
    query = await local.embed_query("reset my password")
    assert _dot(query, change) > _dot(query, revenue)


async def test_local_is_deterministic_and_batch_equals_single(local: LocalEmbedder) -> None:
    texts = [f"Document number {i} talks about topic {i % 3} at some length." for i in range(10)]
    texts[3] = "short"
    first = await local.embed_documents(texts)
    again = await local.embed_documents(texts)
    assert first == again
    singles = [await local.embed_query(t) for t in texts]
    one_big_batch = await LocalEmbedder(batch_size=64).embed_documents(texts)
    for a, b, c in zip(first, singles, one_big_batch, strict=True):
        assert max(abs(x - y) for x, y in zip(a, b, strict=True)) < 1e-5
        assert max(abs(x - y) for x, y in zip(a, c, strict=True)) < 1e-5


async def test_local_model_is_loaded_once_per_process(local: LocalEmbedder) -> None:
    other = create_embedder(Settings(), provider="local", model="sentence-transformers/all-MiniLM-L6-v2")
    assert isinstance(other, LocalEmbedder)
    assert await other.ensure_dimension() == 384
    assert other._load().model is local._load().model
    assert await other.embed_documents([]) == []


async def test_local_loads_lazily_and_reports_a_missing_model(tmp_path: Path) -> None:
    embedder = LocalEmbedder(tmp_path / "nothing-here")  # constructing loads nothing
    assert embedder.model_name.endswith("nothing-here")
    with pytest.raises(KeelError) as info:
        await embedder.embed_query("hello")
    assert info.value.code == ErrorCode.LLM_NOT_CONFIGURED


async def test_a_single_string_is_refused(local: LocalEmbedder) -> None:
    with pytest.raises(TypeError):
        await local.embed_documents("one string")


# ---------------------------------------------------------------- fake OpenAI embeddings server
def _vector_for(text: str, dimension: int) -> list[float]:
    """``item-N`` → a vector whose direction encodes N (exactly representable in float32)."""
    n = float(text.rsplit("-", 1)[1]) if text.startswith("item-") else float(len(text))
    return [n, 1.0] + [0.0] * (dimension - 2)


@dataclass
class FakeEmbeddings:
    """``POST /v1/embeddings`` and the Azure deployment route, on a free loopback port."""

    dimension: int = 8
    reverse_order: bool = True
    fail_status: int | None = None
    requests: list[dict[str, Any]] = field(default_factory=list)
    base_url: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def app(self) -> FastAPI:
        app = FastAPI()

        async def embeddings(request: Request) -> JSONResponse:
            body = await request.json()
            with self._lock:
                self.requests.append(
                    {
                        "path": request.url.path,
                        "query": dict(request.query_params),
                        "headers": dict(request.headers),
                        "body": body,
                    }
                )
            if self.fail_status is not None:
                return JSONResponse(
                    {"error": {"message": "boom", "type": "server_error", "param": None, "code": None}},
                    status_code=self.fail_status,
                )
            inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
            dimension = int(body.get("dimensions") or self.dimension)
            data = []
            for i, text in enumerate(inputs):
                vector = _vector_for(text, dimension)
                embedding: Any = vector
                if body.get("encoding_format") == "base64":
                    embedding = base64.b64encode(struct.pack(f"<{dimension}f", *vector)).decode()
                data.append({"object": "embedding", "index": i, "embedding": embedding})
            if self.reverse_order:
                data.reverse()
            tokens = sum(len(t.split()) for t in inputs)
            return JSONResponse(
                {
                    "object": "list",
                    "data": data,
                    "model": body["model"],
                    "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
                }
            )

        app.post("/v1/embeddings")(embeddings)
        app.post("/openai/deployments/{deployment}/embeddings")(embeddings)
        return app

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
        self.fail_status = None
        self.reverse_order = True
        self.dimension = 8

    @property
    def inputs_per_request(self) -> list[int]:
        return [len(r["body"]["input"]) for r in self.requests]


@pytest.fixture(scope="module")
def fake_server() -> Iterator[FakeEmbeddings]:
    fake = FakeEmbeddings()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    fake.base_url = f"http://127.0.0.1:{port}"
    server = uvicorn.Server(uvicorn.Config(fake.app(), log_level="warning", access_log=False, lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "fake embeddings server did not start"
        time.sleep(0.01)
    yield fake
    server.should_exit = True
    thread.join(10)
    sock.close()


@pytest.fixture
def fake(fake_server: FakeEmbeddings) -> Iterator[FakeEmbeddings]:
    fake_server.reset()
    yield fake_server
    fake_server.reset()


def _openai_settings(fake: FakeEmbeddings) -> Settings:
    return Settings(env="test", llm_base_url=f"{fake.base_url}/v1", llm_api_key="test-key")


@pytest.fixture
async def remote(fake: FakeEmbeddings) -> AsyncIterator[Embedder]:
    embedder = create_embedder(_openai_settings(fake), provider="openai", model="fake-embed")
    yield embedder
    await embedder.aclose()


async def test_openai_batches_of_256_in_input_order(fake: FakeEmbeddings, remote: Embedder) -> None:
    texts = [f"item-{i}" for i in range(600)]
    vectors = await remote.embed_documents(texts)
    assert fake.inputs_per_request == [256, 256, 88]
    assert [r["body"]["input"] for r in fake.requests] == [texts[:256], texts[256:512], texts[512:]]
    assert all(r["path"] == "/v1/embeddings" for r in fake.requests)
    assert all(r["headers"]["authorization"] == "Bearer test-key" for r in fake.requests)
    assert all(r["body"]["model"] == "fake-embed" for r in fake.requests)
    # the server answered each batch in reverse; the adapter reorders by ``index``
    assert len(vectors) == 600
    for i, v in enumerate(vectors):
        assert round(v[0] / v[1]) == i
        assert abs(_norm(v) - 1.0) < 1e-9
    assert remote.dimension == 8  # learnt from the first response, no probe
    assert len(fake.requests) == 3


async def test_openai_probes_the_dimension_once(fake: FakeEmbeddings, remote: Embedder) -> None:
    with pytest.raises(RuntimeError, match="ensure_dimension"):
        _ = remote.dimension
    assert await remote.ensure_dimension() == 8
    assert await remote.ensure_dimension() == 8
    assert remote.dimension == 8
    assert [r["body"]["input"] for r in fake.requests] == [[DIMENSION_PROBE_TEXT]]
    query = await remote.embed_query("item-7")
    assert round(query[0] / query[1]) == 7
    assert len(fake.requests) == 2
    assert await remote.embed_documents([]) == []
    assert len(fake.requests) == 2


async def test_openai_dimensions_argument_needs_no_probe(fake: FakeEmbeddings) -> None:
    embedder = create_embedder(
        _openai_settings(fake), provider="openai", model="fake-embed", dimensions=4, batch_size=1000
    )
    try:
        assert embedder.dimension == 4
        assert await embedder.ensure_dimension() == 4
        assert fake.requests == []
        vectors = await embedder.embed_documents([f"item-{i}" for i in range(300)])
        assert fake.inputs_per_request == [256, 44]  # batch_size is capped at 256
        assert all(r["body"]["dimensions"] == 4 for r in fake.requests)
        assert {len(v) for v in vectors} == {4}
    finally:
        await embedder.aclose()


async def test_openai_server_error_surfaces_without_sdk_retries(
    fake: FakeEmbeddings, remote: Embedder
) -> None:
    fake.fail_status = 500
    with pytest.raises(openai.APIStatusError) as info:
        await remote.embed_documents(["item-1", "item-2"])
    assert info.value.status_code == 500
    assert len(fake.requests) == 1


async def test_openai_retries_are_forced_off_on_an_injected_client(fake: FakeEmbeddings) -> None:
    client = openai.AsyncOpenAI(base_url=f"{fake.base_url}/v1", api_key="k", max_retries=5)
    embedder = OpenAIEmbedder(client, "fake-embed")
    fake.fail_status = 503
    try:
        with pytest.raises(openai.APIStatusError):
            await embedder.embed_query("item-1")
        assert len(fake.requests) == 1
    finally:
        await embedder.aclose()


async def test_openai_wrong_vector_length_is_a_bad_response(fake: FakeEmbeddings, remote: Embedder) -> None:
    assert await remote.ensure_dimension() == 8
    fake.dimension = 6
    with pytest.raises(KeelError) as info:
        await remote.embed_query("item-1")
    assert info.value.code == ErrorCode.LLM_BAD_RESPONSE


async def test_azure_uses_the_deployment_route(fake: FakeEmbeddings) -> None:
    settings = Settings(
        env="test",
        azure_openai_endpoint=fake.base_url,
        azure_openai_api_key="azure-key",
        azure_openai_api_version="2024-10-21",
    )
    embedder = create_embedder(settings, provider="azure", model="my-embeddings")
    try:
        assert embedder.model_name == "my-embeddings"
        vectors = await embedder.embed_documents(["item-3", "item-4"])
        assert [round(v[0] / v[1]) for v in vectors] == [3, 4]
        (request,) = fake.requests
        assert request["path"] == "/openai/deployments/my-embeddings/embeddings"
        assert request["query"] == {"api-version": "2024-10-21"}
        assert request["headers"]["api-key"] == "azure-key"
    finally:
        await embedder.aclose()


def test_azure_needs_a_deployment_and_a_credential() -> None:
    with pytest.raises(KeelError):
        create_embedder(Settings(azure_openai_endpoint="http://127.0.0.1:9"), provider="azure")
    with pytest.raises(KeelError):
        create_embedder(Settings(azure_openai_endpoint="http://127.0.0.1:9"), provider="azure", model="d")
