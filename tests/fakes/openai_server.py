"""A local fake of the OpenAI chat-completions HTTP API, for tests and benchmarks.

The server speaks the real wire protocol (same JSON shapes as api.openai.com,
SSE ``chat.completion.chunk`` streams ending in ``data: [DONE]``), so production
code keeps using the official ``openai`` client or agent-framework's
``OpenAIChatCompletionClient``; only the base URL changes.

Endpoints
    ``POST /v1/chat/completions``                      (stream and non-stream)
    ``POST /openai/deployments/{deployment}/chat/completions?api-version=...``
                                                       (Azure OpenAI shape)
    ``POST /openai/v1/chat/completions``               (Azure "v1" shape)
    ``GET  /v1/models``, ``GET /v1/models/{model}``
Every endpoint requires an ``Authorization: Bearer ...`` or ``api-key`` header.

In-process use (pytest)::

    from tests.fakes.openai_server import FakeOpenAI, Reply, ToolCall, ToolCalls, Error

    with FakeOpenAI() as fake:
        client = openai.OpenAI(base_url=fake.base_url, api_key="x")
        fake.enqueue(
            ToolCalls([ToolCall("get_weather", '{"city": "Paris"}')]),
            Reply("It is sunny.", ttft_s=0.05),
            Error(429, "slow down", retry_after=2),
        )
        ...                       # run the code under test
        assert fake.request_count == 3
        assert fake.requests[0]["messages"][-1]["role"] == "user"

With nothing scripted every request gets ``"Echo: <last user message>"``,
streamed word by word.  ``enqueue`` appends to a FIFO consumed one response per
request; ``set_default`` replaces the fallback (a response object, or a
callable receiving the parsed request body and returning one).

Crash tests: ``fake.hold()`` makes later requests send their headers and first
payload chunk, then block until ``fake.release()``; ``fake.wait_for_request()``
blocks the calling thread until the server has received a request.  The client
may live in another OS process: it is plain HTTP.

Standalone (manual dev, benchmarks)::

    python -m tests.fakes.openai_server --port 18080 --ttft-ms 200 --chunk-delay-ms 20 --words 80
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import re
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from tests.fakes.threaded_server import ThreadedServer

__all__ = [
    "DEFAULT_MODELS",
    "TOOL_CALL_MARKER",
    "Error",
    "FakeOpenAI",
    "Garbage",
    "Hang",
    "RecordedRequest",
    "Reply",
    "Responder",
    "ResponseFactory",
    "ScriptedResponse",
    "ToolCall",
    "ToolCalls",
    "Truncate",
    "build_app",
    "follows_tool_call_markers",
    "main",
    "tool_call_marker",
]

DEFAULT_MODELS: tuple[str, ...] = ("gpt-4o-mini", "gpt-4o", "gpt-4.1-mini", "gpt-4.1")

_SYSTEM_FINGERPRINT = "fp_fakeopenai"
_ARG_FRAGMENT_CHARS = 16
_GATE_POLL_S = 0.01
_GARBAGE_SSE = b'data: {"id":"chatcmpl-garbage","object":"chat.completion.chunk","choices":[{{{ nope\n\n'
_WORD_RE = re.compile(r"\S+\s*|\s+")


# --------------------------------------------------------------------------- #
# Scriptable responses
# --------------------------------------------------------------------------- #


@dataclass(frozen=True)
class Reply:
    """An assistant text reply, streamed one word per chunk.

    ``ttft_s`` delays the first chunk; ``chunk_delay_s`` is the gap between
    later chunks (non-stream requests sleep the equivalent total).  With the
    default ``finish_reason="stop"``, a request's ``max_tokens`` /
    ``max_completion_tokens`` smaller than the word count cuts the reply and
    reports ``"length"``.
    """

    text: str
    ttft_s: float = 0.0
    chunk_delay_s: float = 0.0
    finish_reason: str = "stop"


@dataclass(frozen=True)
class ToolCall:
    """One function call; ``id`` defaults to a fresh ``call_...`` id."""

    name: str
    arguments_json: str = "{}"
    id: str | None = None


@dataclass(frozen=True)
class ToolCalls:
    """An assistant turn requesting tool calls (``finish_reason="tool_calls"``).

    Optional ``text`` is sent as content before the calls.
    """

    calls: Sequence[ToolCall]
    text: str = ""
    ttft_s: float = 0.0
    chunk_delay_s: float = 0.0


@dataclass(frozen=True)
class Error:
    """An HTTP error with OpenAI's ``{"error": {...}}`` body.

    ``retry_after`` (seconds) adds a ``Retry-After`` header, e.g.
    ``Error(429, "Rate limit reached", code="rate_limit_exceeded",
    type="requests", retry_after=2)``.
    """

    status: int = 500
    message: str = "The server had an error while processing your request."
    code: str | None = None
    type: str = "server_error"
    retry_after: float | None = None
    param: str | None = None


@dataclass(frozen=True)
class Garbage:
    """HTTP 200 whose body cannot be parsed.

    Non-stream: ``body`` with ``content_type`` (by default it claims JSON, so
    the client fails decoding it).  Stream: one malformed SSE ``data:`` line,
    then the stream ends without ``[DONE]``.
    """

    body: str = "<html><body>502 Bad Gateway</body></html>"
    content_type: str = "application/json"


@dataclass(frozen=True)
class Hang:
    """Sleep ``seconds`` (asynchronously) before answering with ``then``.

    ``then=None`` answers with the default response.  Other requests are
    served meanwhile.
    """

    seconds: float
    then: ScriptedResponse | None = None


@dataclass(frozen=True)
class Truncate:
    """A response whose connection is dropped mid-way.

    Stream: the role chunk and ``after_chunks`` content chunks of ``text`` are
    sent, then the connection is closed without a finish chunk or ``[DONE]``.
    Non-stream: headers announce the full length, half the body is sent, then
    the connection is closed.  (uvicorn logs one "returned without completing
    response" error line for each; that is expected.)
    """

    text: str = "This reply will be cut off before it is complete."
    after_chunks: int = 1
    chunk_delay_s: float = 0.0


ScriptedResponse: TypeAlias = Reply | ToolCalls | Error | Garbage | Hang | Truncate
ResponseFactory: TypeAlias = Callable[[dict[str, Any]], ScriptedResponse]
Responder: TypeAlias = ScriptedResponse | ResponseFactory

_RESPONSE_TYPES = (Reply, ToolCalls, Error, Garbage, Hang, Truncate)


@dataclass(frozen=True)
class RecordedRequest:
    """A received chat-completions request: URL path, headers (lower-cased) and body."""

    path: str
    headers: Mapping[str, str]
    body: dict[str, Any]


#: ``<<call-tool NAME ARGUMENTS_JSON>>`` anywhere in a prompt (an injected instruction).
TOOL_CALL_MARKER = re.compile(r"<<call-tool (?P<name>[A-Za-z0-9_-]+) (?P<args>\{.*?\})>>")


def tool_call_marker(name: str, arguments: Mapping[str, Any]) -> str:
    """Text that makes :func:`follows_tool_call_markers` call ``name`` when it reads it."""
    return f"<<call-tool {name} {json.dumps(dict(arguments))}>>"


def follows_tool_call_markers(answer: str = "Done.") -> ResponseFactory:
    """A responder for a compliant (injectable) model: when any message of the prompt holds a
    :data:`TOOL_CALL_MARKER` and the prompt has no tool result yet, it calls that tool;
    otherwise it answers ``answer``. Use with ``set_default``."""

    def respond(body: dict[str, Any]) -> ScriptedResponse:
        messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
        if any(m.get("role") == "tool" for m in messages):
            return Reply(answer)
        for message in messages:
            found = TOOL_CALL_MARKER.search(_content_text(message.get("content")))
            if found:
                return ToolCalls([ToolCall(found["name"], found["args"])])
        return Reply(answer)

    return respond


# --------------------------------------------------------------------------- #
# Wire-format helpers
# --------------------------------------------------------------------------- #


def _dumps(obj: object) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def _error_body(
    message: str, type_: str, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def _new_request_id() -> str:
    return f"req_{uuid.uuid4().hex}"


def _error_response(
    status: int,
    message: str,
    type_: str = "invalid_request_error",
    *,
    param: str | None = None,
    code: str | None = None,
    retry_after: float | None = None,
) -> JSONResponse:
    headers = {"x-request-id": _new_request_id()}
    if retry_after is not None:
        headers["retry-after"] = f"{retry_after:g}"
    return JSONResponse(_error_body(message, type_, param, code), status_code=status, headers=headers)


def _content_text(content: object) -> str:
    """Text of a message ``content`` (a string or a list of content parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts: list[str] = []
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, dict) and isinstance(part.get("text"), str):
                parts.append(part["text"])
        return " ".join(parts)
    return ""


def _count_words(text: str) -> int:
    return len(text.split())


def _prompt_tokens(body: Mapping[str, Any]) -> int:
    total = 0
    messages = body.get("messages")
    if not isinstance(messages, list):
        return 0
    for message in messages:
        if not isinstance(message, dict):
            continue
        total += _count_words(_content_text(message.get("content")))
        tool_calls = message.get("tool_calls")
        if isinstance(tool_calls, list):
            for call in tool_calls:
                function = call.get("function") if isinstance(call, dict) else None
                if isinstance(function, dict):
                    total += _count_words(str(function.get("name", "")))
                    total += _count_words(str(function.get("arguments", "")))
    return total


def _echo_text(body: Mapping[str, Any]) -> str:
    messages = body.get("messages")
    last_user = ""
    if isinstance(messages, list):
        for message in messages:
            if isinstance(message, dict) and message.get("role") == "user":
                last_user = _content_text(message.get("content"))
    return f"Echo: {last_user}"


def _split_words(text: str) -> list[str]:
    """Split into word pieces whose concatenation is exactly ``text``."""
    return _WORD_RE.findall(text)


def _max_tokens(body: Mapping[str, Any]) -> int | None:
    for key in ("max_completion_tokens", "max_tokens"):
        value = body.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


@dataclass
class _Completion:
    """Everything needed to render one completion, streamed or not."""

    model: str
    text: str
    tool_calls: list[tuple[str, str, str]]  # (id, name, arguments)
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    ttft_s: float = 0.0
    chunk_delay_s: float = 0.0
    id: str = field(default_factory=lambda: f"chatcmpl-{uuid.uuid4().hex[:29]}")
    created: int = field(default_factory=lambda: int(time.time()))

    @property
    def pieces(self) -> list[str]:
        return _split_words(self.text)

    def usage(self) -> dict[str, Any]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }

    def message(self) -> dict[str, Any]:
        message: dict[str, Any] = {
            "role": "assistant",
            "content": self.text if (self.text or not self.tool_calls) else None,
            "refusal": None,
            "annotations": [],
        }
        if self.tool_calls:
            message["tool_calls"] = [
                {"id": call_id, "type": "function", "function": {"name": name, "arguments": args}}
                for call_id, name, args in self.tool_calls
            ]
        return message

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [
                {"index": 0, "message": self.message(), "logprobs": None, "finish_reason": self.finish_reason}
            ],
            "usage": self.usage(),
            "service_tier": "default",
            "system_fingerprint": _SYSTEM_FINGERPRINT,
        }

    def role_delta(self) -> dict[str, Any]:
        return {
            "role": "assistant",
            "content": "" if (self.text or not self.tool_calls) else None,
            "refusal": None,
        }

    def payload_deltas(self) -> list[dict[str, Any]]:
        deltas: list[dict[str, Any]] = [{"content": piece} for piece in self.pieces]
        for index, (call_id, name, args) in enumerate(self.tool_calls):
            deltas.append(
                {
                    "tool_calls": [
                        {
                            "index": index,
                            "id": call_id,
                            "type": "function",
                            "function": {"name": name, "arguments": ""},
                        }
                    ]
                }
            )
            for start in range(0, len(args), _ARG_FRAGMENT_CHARS):
                fragment = args[start : start + _ARG_FRAGMENT_CHARS]
                deltas.append({"tool_calls": [{"index": index, "function": {"arguments": fragment}}]})
        return deltas

    def chunk(
        self, choices: list[dict[str, Any]], include_usage: bool, usage: dict[str, Any] | None = None
    ) -> bytes:
        obj: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "service_tier": "default",
            "system_fingerprint": _SYSTEM_FINGERPRINT,
            "choices": choices,
        }
        if include_usage:
            obj["usage"] = usage
        return f"data: {_dumps(obj)}\n\n".encode()


def _delta_choice(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
    return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}


def _completion_for(
    response: Reply | ToolCalls | Truncate, body: Mapping[str, Any], model: str
) -> _Completion:
    prompt_tokens = _prompt_tokens(body)
    if isinstance(response, Reply):
        text, finish = response.text, response.finish_reason
        limit = _max_tokens(body)
        if finish == "stop" and limit is not None and _count_words(text) > limit:
            kept = [piece for piece in _split_words(text) if piece.strip()][:limit]
            text, finish = "".join(kept).rstrip(), "length"
        return _Completion(
            model=model,
            text=text,
            tool_calls=[],
            finish_reason=finish,
            prompt_tokens=prompt_tokens,
            completion_tokens=_count_words(text),
            ttft_s=response.ttft_s,
            chunk_delay_s=response.chunk_delay_s,
        )
    if isinstance(response, ToolCalls):
        calls = [(c.id or f"call_{uuid.uuid4().hex[:24]}", c.name, c.arguments_json) for c in response.calls]
        completion_tokens = _count_words(response.text) + sum(
            len(re.findall(r"\w+", name + " " + args)) for _, name, args in calls
        )
        return _Completion(
            model=model,
            text=response.text,
            tool_calls=calls,
            finish_reason="tool_calls",
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            ttft_s=response.ttft_s,
            chunk_delay_s=response.chunk_delay_s,
        )
    return _Completion(
        model=model,
        text=response.text,
        tool_calls=[],
        finish_reason="stop",
        prompt_tokens=prompt_tokens,
        completion_tokens=_count_words(response.text),
        chunk_delay_s=response.chunk_delay_s,
    )


class _AbortingStreamingResponse(StreamingResponse):
    """Sends the start and the body chunks, then returns without finishing.

    uvicorn reacts to an unfinished response by closing the connection, which
    is exactly the "upstream died mid-response" case.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        async for chunk in self.body_iterator:
            data = chunk if isinstance(chunk, bytes | memoryview) else chunk.encode(self.charset)
            await send({"type": "http.response.body", "body": bytes(data), "more_body": True})
        # Deliberately no final {"more_body": False} message.


# --------------------------------------------------------------------------- #
# The fake
# --------------------------------------------------------------------------- #


class FakeOpenAI(ThreadedServer):
    """A scriptable, thread-safe fake OpenAI server.

    ``start()`` serves on ``host`` (``port=0``: a free port) from a daemon
    thread; use it as a context manager to stop it automatically.
    ``max_recorded`` bounds how many request bodies are kept (``None``: all);
    ``request_count`` always counts every request.
    """

    server_name = "fake OpenAI server"

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        default: Responder | None = None,
        models: Sequence[str] = DEFAULT_MODELS,
        max_recorded: int | None = None,
        log_level: str = "warning",
    ) -> None:
        super().__init__(host=host, port=port, log_level=log_level)
        self._models = tuple(models)
        self._max_recorded = max_recorded

        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._queue: deque[Responder] = deque()
        self._default: Responder | None = default
        self._log: deque[RecordedRequest] = deque()
        self._dropped = 0  # records discarded because of max_recorded
        self._count = 0
        self._cursor = 0  # next absolute index wait_for_request hands out
        self._gate: threading.Event | None = None
        self._held = 0

        self.app: FastAPI = build_app(self)

    # -- lifecycle (start, stop, serve_forever, port: ThreadedServer) -------- #

    def _asgi_app(self) -> ASGIApp:
        return self.app

    def _ready(self) -> bool:
        conn = http.client.HTTPConnection(self._host, self.port, timeout=1.0)
        try:
            conn.request("GET", "/v1/models", headers={"Authorization": "Bearer probe"})
            return conn.getresponse().status == 200
        except OSError:
            return False
        finally:
            conn.close()

    # -- addresses ---------------------------------------------------------- #

    @property
    def root_url(self) -> str:
        """``http://127.0.0.1:PORT`` (the Azure ``azure_endpoint``)."""
        return f"http://{self._host}:{self.port}"

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1`` (the OpenAI client's ``base_url``)."""
        return f"{self.root_url}/v1"

    # -- scripting ---------------------------------------------------------- #

    def enqueue(self, *responses: Responder) -> None:
        """Append responses to the FIFO; each request consumes one, then the default applies."""
        with self._lock:
            self._queue.extend(responses)

    def set_default(self, response: Responder | None) -> None:
        """Response (or ``callable(body) -> response``) used when the queue is empty; ``None``: echo."""
        with self._lock:
            self._default = response

    @property
    def pending(self) -> int:
        """Number of scripted responses not yet consumed."""
        with self._lock:
            return len(self._queue)

    def reset(self) -> None:
        """Clear the queue, recorded requests, default and gating (held requests are released)."""
        with self._lock:
            self._queue.clear()
            self._default = None
            self._log.clear()
            self._dropped = self._count = self._cursor = 0
            if self._gate is not None:
                self._gate.set()
                self._gate = None

    # -- gating ------------------------------------------------------------- #

    def hold(self) -> None:
        """Requests arriving from now on block after their first chunk until ``release()``."""
        with self._lock:
            if self._gate is None:
                self._gate = threading.Event()

    def release(self) -> None:
        """Let every held request finish, and stop holding new ones."""
        with self._lock:
            if self._gate is not None:
                self._gate.set()
                self._gate = None

    @property
    def held_count(self) -> int:
        """Number of requests currently blocked by ``hold()``."""
        with self._lock:
            return self._held

    def wait_for_request(self, timeout: float = 5.0, *, since: int | None = None) -> dict[str, Any]:
        """Block until a request not yet handed out by this method has arrived; return its body.

        Requests are handed out in arrival order, each once, including those that
        arrived before the call.  ``since=n`` skips to the request with absolute index
        ``n`` (e.g. ``since=fake.request_count`` waits for a request that has not
        arrived yet).  Raises ``TimeoutError``.
        """
        with self._arrived:
            if since is not None:
                self._cursor = since
            index = self._cursor
            if not self._arrived.wait_for(lambda: self._count > index, timeout):
                raise TimeoutError(f"no request #{index} within {timeout}s ({self._count} received)")
            self._cursor = index + 1
            if index < self._dropped:
                raise LookupError(
                    f"request #{index} is no longer recorded (max_recorded={self._max_recorded})"
                )
            return self._log[index - self._dropped].body

    # -- inspection --------------------------------------------------------- #

    @property
    def requests(self) -> list[dict[str, Any]]:
        """Bodies of the recorded chat-completions requests, oldest first (a copy)."""
        with self._lock:
            return [r.body for r in self._log]

    @property
    def request_log(self) -> list[RecordedRequest]:
        """Recorded requests with path and headers, oldest first (a copy)."""
        with self._lock:
            return list(self._log)

    @property
    def request_count(self) -> int:
        """Number of chat-completions requests received since start or ``reset()``."""
        with self._lock:
            return self._count

    @property
    def last_request(self) -> dict[str, Any] | None:
        with self._lock:
            return self._log[-1].body if self._log else None

    @property
    def models(self) -> tuple[str, ...]:
        return self._models

    # -- used by the app ---------------------------------------------------- #

    def _record(self, request: RecordedRequest) -> threading.Event | None:
        """Record an arrival; returns the gate this request must honour (if held)."""
        with self._arrived:
            self._log.append(request)
            self._count += 1
            if self._max_recorded is not None:
                while len(self._log) > self._max_recorded:
                    self._log.popleft()
                    self._dropped += 1
            self._arrived.notify_all()
            return self._gate

    def _next(self) -> Responder | None:
        with self._lock:
            return self._queue.popleft() if self._queue else self._default

    def _default_responder(self) -> Responder | None:
        with self._lock:
            return self._default

    def _held_delta(self, delta: int) -> None:
        with self._lock:
            self._held += delta


# --------------------------------------------------------------------------- #
# The ASGI app
# --------------------------------------------------------------------------- #


def _resolve(item: Responder | None, body: dict[str, Any]) -> ScriptedResponse:
    if item is None:
        return Reply(_echo_text(body))
    if isinstance(item, _RESPONSE_TYPES):
        return item
    result = item(body)
    if not isinstance(result, _RESPONSE_TYPES):
        raise TypeError(f"response callable returned {type(result).__name__}, not a response object")
    return result


def _authorized(request: Request) -> bool:
    auth = request.headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return True
    return bool(request.headers.get("api-key", "").strip())


def _unauthorized() -> JSONResponse:
    return _error_response(
        401,
        "You didn't provide an API key. You need to provide your API key in an Authorization header "
        "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the api-key header.",
        "invalid_request_error",
    )


async def _sleep_unless_disconnected(seconds: float, request: Request) -> bool:
    """Sleep; returns False early if the client went away."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        await asyncio.sleep(min(left, 0.05))
        if await request.is_disconnected():
            return False
    return True


@dataclass(frozen=True)
class _Call:
    """One parsed chat-completions call."""

    request: Request
    body: dict[str, Any]
    model: str
    stream: bool
    include_usage: bool
    gate: threading.Event | None
    request_id: str = field(default_factory=_new_request_id)

    @property
    def headers(self) -> dict[str, str]:
        return {"x-request-id": self.request_id}


class _ChatEndpoint:
    """Request handling for the chat-completions routes of one ``FakeOpenAI``."""

    def __init__(self, fake: FakeOpenAI) -> None:
        self.fake = fake

    async def handle(self, request: Request, deployment: str | None = None) -> Response:
        if not _authorized(request):
            return _unauthorized()
        body = await _parse_body(request)
        if isinstance(body, Response):
            return body
        stream = body.get("stream") is True
        options = body.get("stream_options")
        call = _Call(
            request=request,
            body=body,
            model=str(body.get("model") or deployment or DEFAULT_MODELS[0]),
            stream=stream,
            include_usage=stream and isinstance(options, dict) and options.get("include_usage") is True,
            gate=self.fake._record(
                RecordedRequest(
                    path=request.url.path,
                    headers={k.lower(): v for k, v in request.headers.items()},
                    body=body,
                )
            ),
        )
        try:
            response = _resolve(self.fake._next(), body)
            while isinstance(response, Hang):
                if not await _sleep_unless_disconnected(response.seconds, request):
                    return Response(status_code=499)
                response = response.then or _resolve(self.fake._default_responder(), body)
        except Exception as exc:  # a broken response callable: make it visible to the test
            return _error_response(500, f"fake OpenAI response callable failed: {exc!r}", "server_error")
        if isinstance(response, Error):
            await self.wait_gate(call)
            return _error_response(
                response.status,
                response.message,
                response.type,
                param=response.param,
                code=response.code,
                retry_after=response.retry_after,
            )
        if isinstance(response, Garbage):
            return await self.garbage(response, call)
        completion = _completion_for(response, body, call.model)
        if isinstance(response, Truncate):
            return self.truncated(completion, response, call)
        return await self.complete(completion, call)

    async def wait_gate(self, call: _Call) -> bool:
        """Block (asynchronously) while the request's gate is closed; False if the client left."""
        if call.gate is None:
            return True
        self.fake._held_delta(1)
        try:
            while not call.gate.is_set():
                if await call.request.is_disconnected():
                    return False
                await asyncio.sleep(_GATE_POLL_S)
            return True
        finally:
            self.fake._held_delta(-1)

    async def complete(self, completion: _Completion, call: _Call) -> Response:
        if call.stream:
            return StreamingResponse(
                self.stream_body(completion, call),
                media_type="text/event-stream",
                headers={**call.headers, "cache-control": "no-cache"},
            )
        pieces = max(len(completion.payload_deltas()), 1)
        delay = completion.ttft_s + completion.chunk_delay_s * (pieces - 1)
        if delay > 0 and not await _sleep_unless_disconnected(delay, call.request):
            return Response(status_code=499)
        await self.wait_gate(call)
        return JSONResponse(completion.to_json(), headers=call.headers)

    async def stream_body(
        self, completion: _Completion, call: _Call, truncate_after: int | None = None
    ) -> AsyncIterator[bytes]:
        def frame(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
            return completion.chunk([_delta_choice(delta, finish_reason)], call.include_usage)

        if completion.ttft_s > 0:
            await asyncio.sleep(completion.ttft_s)
        yield frame(completion.role_delta())
        deltas = completion.payload_deltas()
        for i, delta in enumerate(deltas):
            if truncate_after is not None and i >= truncate_after:
                return
            if i > 0 and completion.chunk_delay_s > 0:
                await asyncio.sleep(completion.chunk_delay_s)
            yield frame(delta)
            if i == 0 and not await self.wait_gate(call):
                return
        if (not deltas and not await self.wait_gate(call)) or truncate_after is not None:
            return
        yield frame({}, completion.finish_reason)
        if call.include_usage:
            yield completion.chunk([], True, completion.usage())
        yield b"data: [DONE]\n\n"

    async def garbage(self, garbage: Garbage, call: _Call) -> Response:
        if not call.stream:
            await self.wait_gate(call)
            return Response(garbage.body, media_type=garbage.content_type, headers=call.headers)

        async def body() -> AsyncIterator[bytes]:
            yield _GARBAGE_SSE
            await self.wait_gate(call)

        return StreamingResponse(body(), media_type="text/event-stream", headers=call.headers)

    def truncated(self, completion: _Completion, truncate: Truncate, call: _Call) -> Response:
        if call.stream:
            return _AbortingStreamingResponse(
                self.stream_body(completion, call, truncate_after=max(0, truncate.after_chunks)),
                media_type="text/event-stream",
                headers=call.headers,
            )
        full = _dumps(completion.to_json()).encode()

        async def half_body() -> AsyncIterator[bytes]:
            yield full[: len(full) // 2]

        return _AbortingStreamingResponse(
            half_body(),
            media_type="application/json",
            headers={**call.headers, "content-length": str(len(full))},
        )


async def _parse_body(request: Request) -> dict[str, Any] | Response:
    try:
        body = json.loads(await request.body())
    except ValueError:
        return _error_response(
            400,
            "We could not parse the JSON body of your request. (HINT: This likely means you aren't using "
            "your HTTP library correctly. The OpenAI API expects a JSON payload.)",
        )
    if not isinstance(body, dict):
        return _error_response(400, "The request body must be a JSON object.")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return _error_response(
            400,
            "Missing required parameter: 'messages'.",
            param="messages",
            code="missing_required_parameter",
        )
    return body


def _model_json(model_id: str) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": 1_700_000_000, "owned_by": "system"}


def build_app(fake: FakeOpenAI) -> FastAPI:
    """The FastAPI app serving ``fake`` (usable with any ASGI server or transport)."""
    app = FastAPI(title="Fake OpenAI", docs_url=None, redoc_url=None, openapi_url=None)
    endpoint = _ChatEndpoint(fake)

    @app.post("/v1/chat/completions")
    @app.post("/openai/v1/chat/completions")
    async def chat(request: Request) -> Response:
        return await endpoint.handle(request)

    @app.post("/openai/deployments/{deployment}/chat/completions")
    async def azure_chat(request: Request, deployment: str) -> Response:
        if _authorized(request) and not request.query_params.get("api-version"):
            return _error_response(
                400,
                "Missing required query parameter 'api-version'.",
                param="api-version",
                code="missing_api_version",
            )
        return await endpoint.handle(request, deployment)

    @app.get("/v1/models")
    @app.get("/openai/v1/models")
    async def list_models(request: Request) -> Response:
        if not _authorized(request):
            return _unauthorized()
        return JSONResponse({"object": "list", "data": [_model_json(m) for m in fake.models]})

    @app.get("/v1/models/{model_id}")
    async def get_model(request: Request, model_id: str) -> Response:
        if not _authorized(request):
            return _unauthorized()
        if model_id not in fake.models:
            return _error_response(
                404, f"The model '{model_id}' does not exist", param="model", code="model_not_found"
            )
        return JSONResponse(_model_json(model_id))

    return app


# --------------------------------------------------------------------------- #
# Standalone entry point
# --------------------------------------------------------------------------- #

_VOCABULARY = (
    *("the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog", "while", "keel"),
    *("workers", "stream", "tokens", "through", "temporal", "activities", "and", "every"),
    *("chunk", "arrives", "right", "on", "time"),
)


def _fixed_text(words: int) -> str:
    return " ".join(_VOCABULARY[i % len(_VOCABULARY)] for i in range(max(words, 0)))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.fakes.openai_server",
        description="Fake OpenAI chat-completions server with a fixed reply.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=18080)
    parser.add_argument("--ttft-ms", type=float, default=0.0, help="delay before the first chunk")
    parser.add_argument("--chunk-delay-ms", type=float, default=0.0, help="delay between later chunks")
    parser.add_argument("--words", type=int, default=50, help="words in the fixed reply")
    parser.add_argument("--log-level", default="warning")
    parser.add_argument(
        "--follow-tool-markers",
        action="store_true",
        help="call the tool a message names with <<call-tool NAME {json args}>>, then answer",
    )
    args = parser.parse_args(argv)

    reply = Reply(
        _fixed_text(args.words), ttft_s=args.ttft_ms / 1000.0, chunk_delay_s=args.chunk_delay_ms / 1000.0
    )
    default: Responder = reply
    if args.follow_tool_markers:
        default = follows_tool_call_markers(_fixed_text(args.words))
    fake = FakeOpenAI(
        host=args.host, port=args.port, default=default, max_recorded=1000, log_level=args.log_level
    )
    sys.stdout.write(
        f"fake OpenAI on http://{args.host}:{args.port}/v1 "
        f"(words={args.words} ttft_ms={args.ttft_ms:g} chunk_delay_ms={args.chunk_delay_ms:g}); "
        "Ctrl-C stops\n"
    )
    sys.stdout.flush()
    fake.serve_forever()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
