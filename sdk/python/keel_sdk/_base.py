"""What the sync and async clients share: configuration, request descriptions, the
retry policy, and upload progress. No I/O happens here."""

from __future__ import annotations

import mimetypes
import os
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import IO, Any, Generic, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel

from keel_sdk._version import __version__
from keel_sdk.errors import APIConnectionError, APITimeoutError, retry_after_s

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

DEFAULT_URL = "http://127.0.0.1:8000"
DEFAULT_TIMEOUT = httpx.Timeout(300.0, connect=10.0)  # a chat turn may take minutes
DEFAULT_MAX_RETRIES = 2
INITIAL_BACKOFF_S = 0.5
MAX_BACKOFF_S = 8.0
MAX_RETRY_AFTER_S = 60.0  # a longer Retry-After is the caller's decision: the error is raised
RETRY_ANY_METHOD = frozenset({429, 503})  # Keel refuses these before any work starts
RETRY_IDEMPOTENT = frozenset({408, 429, 500, 502, 503, 504})


def segment(value: str) -> str:
    """A path parameter, escaped so it cannot leave its segment."""
    return quote(value, safe="")


def resolve_config(
    base_url: str | None, api_key: str | None, token: str | None, env: Mapping[str, str] | None = None
) -> tuple[str, str | None]:
    """``(base_url, credential)``: the arguments, else ``KEEL_URL`` and ``KEEL_API_KEY`` /
    ``KEEL_TOKEN`` from the environment, else ``http://127.0.0.1:8000`` and no credential."""
    env = os.environ if env is None else env
    url = base_url or env.get("KEEL_URL") or DEFAULT_URL
    credential = api_key or token or env.get("KEEL_API_KEY") or env.get("KEEL_TOKEN") or None
    return url.rstrip("/"), credential


def default_headers(credential: str | None, extra: Mapping[str, str] | None) -> dict[str, str]:
    headers = {"User-Agent": f"keel-sdk-python/{__version__}", "Accept": "application/json"}
    if credential:
        headers["Authorization"] = f"Bearer {credential}"  # API keys and tokens alike (docs/api.md)
    headers.update(extra or {})
    return headers


@dataclass(frozen=True)
class Call(Generic[T]):
    """One API operation: the request, whether repeating it is harmless, and how to read the answer."""

    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    params: Mapping[str, Any] | None = None
    json: Any = None
    files: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)
    #: Repeating the request after an unknown outcome (a broken connection, 5xx) is safe.
    idempotent: bool | None = None

    @property
    def safe_to_repeat(self) -> bool:
        if self.idempotent is not None:
            return self.idempotent
        return self.method in ("GET", "HEAD", "PUT", "DELETE", "PATCH", "OPTIONS")

    def build(self, client: httpx.Client | httpx.AsyncClient) -> httpx.Request:
        params = {k: v for k, v in (self.params or {}).items() if v is not None}
        return client.build_request(
            self.method,
            self.path,
            params=params or None,
            json=self.json,
            files=self.files,
            headers=dict(self.headers),
        )


def model(cls: type[M]) -> Callable[[httpx.Response], M]:
    def parse(response: httpx.Response) -> M:
        return cls.model_validate_json(response.content)

    return parse


def no_content(response: httpx.Response) -> None:
    return None


@dataclass(frozen=True)
class RetryPolicy:
    """When to send a request again, and after how long.

    * Connection errors before the request was sent (connect failed or timed out): always.
    * 429 and 503 (``rate_limited``, ``session_busy``, ``ingest_busy``, ``overloaded``,
      ``upstream_unavailable``): always, even for a POST that starts work, because Keel
      answers them before the work starts.
    * 408, 500, 502, 504 and a connection broken after the request went out: only for
      requests that are safe to repeat (GET, PUT, PATCH, DELETE and the read-only or
      set-like POSTs); never for a chat turn, an upload, a key creation or rotation or
      an approval decision, which may have happened.
    * ``x-should-retry: true|false`` from the server overrides the status rule.
    * The wait is ``Retry-After`` when the server sent one (at most 60 s; a longer one is
      not waited for: the error is raised with ``retry_after`` set), else exponential
      backoff 0.5 s, 1 s, 2 s … capped at 8 s, with jitter.
    """

    max_retries: int = DEFAULT_MAX_RETRIES

    def backoff(self, attempt: int) -> float:
        delay = min(INITIAL_BACKOFF_S * float(2**attempt), MAX_BACKOFF_S)
        return delay * (1 - 0.25 * random.random())

    def after_response(self, attempt: int, call: Call[Any], response: httpx.Response) -> float | None:
        """Seconds to wait before retrying this answer, or None to stop."""
        if attempt >= self.max_retries or not response.is_error:
            return None
        should = response.headers.get("x-should-retry")
        if should == "false":
            return None
        allowed = RETRY_ANY_METHOD if not call.safe_to_repeat else RETRY_IDEMPOTENT
        if should != "true" and response.status_code not in allowed:
            return None
        wait = retry_after_s(response.headers)
        if wait is None:
            return self.backoff(attempt)
        return wait if wait <= MAX_RETRY_AFTER_S else None

    def after_error(self, attempt: int, call: Call[Any], error: httpx.TransportError) -> float | None:
        if attempt >= self.max_retries:
            return None
        unsent = isinstance(error, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)
        return self.backoff(attempt) if unsent or call.safe_to_repeat else None


@dataclass(frozen=True)
class UploadProgress:
    """How much of an upload's body has been handed to the connection."""

    filename: str
    sent_bytes: int
    total_bytes: int

    @property
    def fraction(self) -> float:
        return self.sent_bytes / self.total_bytes if self.total_bytes else 1.0


ProgressCallback = Callable[[UploadProgress], None]


class ProgressFile:
    """A file wrapper that reports each read of the multipart encoder (a retry re-reads
    from the start, and the count starts again)."""

    def __init__(self, handle: IO[bytes], filename: str, callback: ProgressCallback | None) -> None:
        self._handle = handle
        self._filename = filename
        self._callback = callback
        self._sent = 0
        self._total = os.fstat(handle.fileno()).st_size

    def fileno(self) -> int:
        return self._handle.fileno()

    def tell(self) -> int:
        return self._handle.tell()

    def seek(self, offset: int, whence: int = 0) -> int:
        if offset == 0 and whence == 0:
            self._sent = 0
        return self._handle.seek(offset, whence)

    def read(self, size: int = -1) -> bytes:
        chunk = self._handle.read(size)
        self._sent += len(chunk)
        if self._callback is not None and (chunk or self._total == 0):
            self._callback(UploadProgress(self._filename, self._sent, self._total))
        return chunk


_TYPES = {
    ".md": "text/markdown",
    ".markdown": "text/markdown",
    ".txt": "text/plain",
    ".json": "application/json",
}


def content_type_for(name: str) -> str:
    suffix = os.path.splitext(name)[1].lower()
    return _TYPES.get(suffix) or mimetypes.guess_type(name)[0] or "application/octet-stream"


def connection_error(exc: httpx.TransportError) -> APIConnectionError:
    cls = APITimeoutError if isinstance(exc, httpx.TimeoutException) else APIConnectionError
    return cls(str(exc) or type(exc).__name__, code="connection_error")


def events_call(session_id: str, turn_id: str, last_event_id: str | None) -> Call[None]:
    """``GET …/turns/{turn_id}/events``: the turn's events after ``last_event_id``, then live."""
    headers = {"Accept": "text/event-stream"}
    if last_event_id:
        headers["Last-Event-ID"] = last_event_id
    path = f"/api/v1/sessions/{segment(session_id)}/turns/{segment(turn_id)}/events"
    return Call("GET", path, no_content, headers=headers)
