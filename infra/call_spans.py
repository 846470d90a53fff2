"""One ``with`` per outbound call of a turn: the span (OpenTelemetry GenAI conventions) and
the call's Prometheus metrics (:mod:`infra.call_metrics`) together.

- :func:`llm_call`: span ``chat {model}`` (CLIENT), ``keel_llm_request_duration_seconds``
  and ``keel_llm_time_to_first_token_seconds``.
- :func:`retrieval`: span ``retrieval {data source}`` (CLIENT), ``keel_retrieval_duration_seconds``
  and ``keel_retrieval_results``.
- :func:`tool_call`: span ``execute_tool {tool}`` (INTERNAL), ``keel_tool_calls_total`` and
  ``keel_tool_call_duration_seconds``.

The block's outcome is ``ok``, ``cancelled`` (``asyncio.CancelledError``: the activity was
cancelled), ``timeout`` (a tool's) or ``error`` (anything else raised, or a result the
call site reports as failed); a failure sets ``error.type`` (an ``ApplicationError``'s type,
else the exception's class name) and the span's error status. Message contents, tool
arguments and results and query texts are on the span only with
``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true`` (:func:`infra.tracing.capture_content`).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from infra.call_metrics import (
    LLM_REQUEST_DURATION,
    LLM_TIME_TO_FIRST_TOKEN,
    RETRIEVAL_DURATION,
    RETRIEVAL_RESULTS,
    TOOL_CALL_DURATION,
    TOOL_CALLS,
)
from infra.mcp_client import ToolTimeout
from infra.tracing import SESSION_ID, TURN_ID, USER_ID, capture_content

_TRACER = "keel"
#: ``gen_ai.data_source.id`` of Keel's knowledge index (vector engine + Postgres ACL check).
KNOWLEDGE_INDEX = "keel-knowledge"
#: Content attributes are cut to this many characters (a span is not a transcript store).
_CONTENT_CHARS = 16_000


class LlmCall:
    """What the call site reports while the model call runs."""

    def __init__(self, span: Span, model: str) -> None:
        self._span = span
        self._model = model
        self.started = time.monotonic()
        self._first_token: float | None = None
        self.failed = False

    def first_token(self) -> None:
        """Text arrived; the first time, the time to first token is recorded."""
        if self._first_token is None:
            self._first_token = time.monotonic() - self.started
            LLM_TIME_TO_FIRST_TOKEN.labels(model=self._model).observe(self._first_token)

    def finished(
        self,
        *,
        response_model: str | None,
        finish_reason: str | None,
        input_tokens: int,
        output_tokens: int,
        output_text: str,
    ) -> None:
        span = self._span
        if not span.is_recording():
            return
        if response_model:
            span.set_attribute("gen_ai.response.model", response_model)
        if finish_reason:
            span.set_attribute("gen_ai.response.finish_reasons", [finish_reason])
        span.set_attribute("gen_ai.usage.input_tokens", input_tokens)
        span.set_attribute("gen_ai.usage.output_tokens", output_tokens)
        if capture_content():
            message = {"role": "assistant", "parts": [{"type": "text", "content": output_text}]}
            if finish_reason:
                message["finish_reason"] = finish_reason
            span.set_attribute("gen_ai.output.messages", _json([message]))


class Retrieval:
    def __init__(self, span: Span) -> None:
        self._span = span
        self.count: int | None = None

    def results(self, count: int) -> None:
        self.count = count
        self._span.set_attribute("keel.retrieval.result_count", count)


class ToolCall:
    def __init__(self, span: Span) -> None:
        self._span = span
        self.failed = False

    def result(self, *, ok: bool, content: str) -> None:
        """The tool answered; ``ok=False``: with its own error result (outcome ``error``)."""
        self.failed = not ok
        if not ok:
            self._span.set_attribute("error.type", "tool_error")
            self._span.set_status(Status(StatusCode.ERROR, "the tool returned an error result"))
        if capture_content() and self._span.is_recording():
            self._span.set_attribute("gen_ai.tool.call.result", content[:_CONTENT_CHARS])


@contextmanager
def llm_call(
    *,
    model: str,
    provider: str,
    server_address: str | None,
    session_id: str,
    turn_id: str,
    max_tokens: int | None,
    temperature: float | None,
    messages: Sequence[Any] = (),
    user_id: str | None = None,
) -> Iterator[LlmCall]:
    """The model call of the block; ``messages`` (objects with ``role`` and ``text``) are
    written only with the content flag."""
    with _span(f"chat {model}", SpanKind.CLIENT) as span:
        call = LlmCall(span, model)
        if span.is_recording():
            _ids(span, user_id=user_id, session_id=session_id, turn_id=turn_id)
            span.set_attribute("gen_ai.operation.name", "chat")
            span.set_attribute("gen_ai.provider.name", provider)
            span.set_attribute("gen_ai.request.model", model)
            span.set_attribute("gen_ai.conversation.id", session_id)
            if max_tokens is not None:
                span.set_attribute("gen_ai.request.max_tokens", max_tokens)
            if temperature is not None:
                span.set_attribute("gen_ai.request.temperature", temperature)
            if server_address:
                span.set_attribute("server.address", server_address)
            if capture_content():
                span.set_attribute("gen_ai.input.messages", _json([_message(m) for m in messages]))
        outcome = "error"
        try:
            yield call
            outcome = "ok"
        except asyncio.CancelledError:
            outcome = "cancelled"
            raise
        finally:
            LLM_REQUEST_DURATION.labels(model=model, outcome=outcome).observe(time.monotonic() - call.started)


@contextmanager
def retrieval(
    *,
    knowledge_base_ids: Sequence[str],
    top_k: int,
    query: str,
    user_id: str | None = None,
    session_id: str | None = None,
    turn_id: str | None = None,
    data_source: str = KNOWLEDGE_INDEX,
) -> Iterator[Retrieval]:
    """One knowledge search (``knowledge_base_ids`` empty: every one the user may read);
    the call site reports the result count."""
    started = time.monotonic()
    with _span(f"retrieval {data_source}", SpanKind.CLIENT) as span:
        found = Retrieval(span)
        if span.is_recording():
            _ids(span, user_id=user_id, session_id=session_id, turn_id=turn_id)
            span.set_attribute("gen_ai.operation.name", "retrieval")
            span.set_attribute("gen_ai.data_source.id", data_source)
            span.set_attribute("keel.knowledge_base_ids", list(knowledge_base_ids))
            span.set_attribute("keel.retrieval.top_k", top_k)
            if session_id:
                span.set_attribute("gen_ai.conversation.id", session_id)
            if capture_content():
                span.set_attribute("gen_ai.retrieval.query.text", query[:_CONTENT_CHARS])
        outcome = "error"
        try:
            yield found
            outcome = "ok"
        except asyncio.CancelledError:
            outcome = "cancelled"
            raise
        finally:
            RETRIEVAL_DURATION.labels(outcome=outcome).observe(time.monotonic() - started)
            if outcome == "ok" and found.count is not None:
                RETRIEVAL_RESULTS.observe(found.count)


@contextmanager
def tool_call(
    *,
    server_id: str,
    server_name: str,
    tool: str,
    called_as: str,
    call_id: str,
    arguments: Any,
    user_id: str,
    session_id: str,
    turn_id: str,
) -> Iterator[ToolCall]:
    """One MCP ``tools/call`` of ``tool`` on its server (``called_as``: the name the model
    used, ``<server>__<tool>``); a :class:`infra.mcp_client.ToolTimeout` is outcome ``timeout``.
    The metrics are labelled with the server's name and the tool's own name."""
    started = time.monotonic()
    with _span(f"execute_tool {called_as}", SpanKind.INTERNAL) as span:
        call = ToolCall(span)
        if span.is_recording():
            _ids(span, user_id=user_id, session_id=session_id, turn_id=turn_id)
            span.set_attribute("gen_ai.operation.name", "execute_tool")
            span.set_attribute("gen_ai.tool.name", called_as)
            span.set_attribute("gen_ai.tool.call.id", call_id)
            span.set_attribute("gen_ai.tool.type", "extension")
            span.set_attribute("gen_ai.conversation.id", session_id)
            span.set_attribute("mcp.method.name", "tools/call")
            span.set_attribute("keel.mcp.server_id", server_id)
            span.set_attribute("keel.mcp.server_name", server_name)
            if capture_content():
                span.set_attribute("gen_ai.tool.call.arguments", _json(arguments)[:_CONTENT_CHARS])
        outcome = "error"
        try:
            yield call
            outcome = "error" if call.failed else "ok"
        except ToolTimeout:
            outcome = "timeout"
            raise
        finally:
            TOOL_CALLS.labels(server=server_name, tool=tool, outcome=outcome).inc()
            TOOL_CALL_DURATION.labels(server=server_name, tool=tool).observe(time.monotonic() - started)


@contextmanager
def _span(name: str, kind: SpanKind) -> Iterator[Span]:
    """A current span that records the block's exception as ``error.type`` (cancellation too)."""
    tracer = trace.get_tracer(_TRACER)
    with tracer.start_as_current_span(
        name, kind=kind, record_exception=False, set_status_on_exception=False
    ) as span:
        try:
            yield span
        except BaseException as exc:
            if span.is_recording():
                error_type = getattr(exc, "type", None) or type(exc).__name__
                span.set_attribute("error.type", str(error_type))
                span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {str(exc)[:200]}"))
            raise


def _ids(span: Span, *, user_id: str | None, session_id: str | None, turn_id: str | None) -> None:
    for key, value in ((USER_ID, user_id), (SESSION_ID, session_id), (TURN_ID, turn_id)):
        if value:
            span.set_attribute(key, value)


def _message(message: Any) -> dict[str, Any]:
    role = getattr(message, "role", "")
    text = getattr(message, "text", "") or ""
    return {"role": str(role), "parts": [{"type": "text", "content": text[:_CONTENT_CHARS]}]}


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)
