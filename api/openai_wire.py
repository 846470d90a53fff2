"""OpenAI's wire shapes for ``/v1`` (api/routes/openai_compat.py): the request body, the
``chat.completion`` / ``chat.completion.chunk`` objects built from a Keel turn, and the
error envelope.

Keel's own facts (session, turn, citations, tool calls, approvals, notices) ride along
in a ``keel`` field on the completion and on chunks; the standard fields are always
what an OpenAI client expects, so clients that do not know ``keel`` lose nothing.
"""

from __future__ import annotations

import json
import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from api.text_guard import RequestModel
from core.models.chat import ChatResponse

#: Turn statuses as ``finish_reason`` (an answer that waits for approval has stopped for now).
_FINISH: dict[str, str] = {"completed": "stop", "awaiting_approval": "stop"}


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: str
    text: str | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")  # name, tool_calls, tool_call_id, ...

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None

    def text(self) -> str | None:
        """The message's text; None when a part is not text (images, audio, files)."""
        if self.content is None or isinstance(self.content, str):
            return self.content
        if any(part.type != "text" or part.text is None for part in self.content):
            return None
        return "".join(part.text or "" for part in self.content)


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    include_usage: bool = False


class ChatCompletionRequest(RequestModel):
    """OpenAI's body. Keel uses ``model`` (the agent), the last user message (the turn),
    ``stream`` and ``stream_options``; ``user`` is recorded, never trusted for identity.
    Sampling parameters (``temperature``, ``max_tokens``, ...) belong to the agent's
    definition and are accepted and ignored, as unknown fields are."""

    model_config = ConfigDict(extra="allow")  # bad text is still refused anywhere in the body

    model: str = Field(min_length=1, max_length=64)
    messages: list[ChatMessage] = Field(min_length=1, max_length=1000)
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = Field(default=None, max_length=256)


def completion_id(turn_id: str) -> str:
    return f"chatcmpl-{turn_id}"


def _usage(result: ChatResponse) -> dict[str, int]:
    usage = result.usage
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.prompt_tokens + usage.completion_tokens,
    }


def approval_note(result: ChatResponse) -> str:
    """What an answer waiting for a human says, with the approval ids to decide."""
    pending = [a for a in result.approvals if a.status == "pending"]
    if not pending:
        return ""
    listed = "; ".join(f"{a.tool} (approval id {a.id})" for a in pending)
    return f"This answer waits for approval of {listed}. Decide with POST /api/v1/approvals/{{id}}."


def keel_extension(result: ChatResponse) -> dict[str, Any]:
    return {
        "session_id": result.session_id,
        "turn_id": result.turn_id,
        "status": result.status,
        "citations": [c.model_dump(mode="json") for c in result.message.citations],
        "tool_calls": [t.model_dump(mode="json") for t in result.tool_calls],
        "approvals": [a.model_dump(mode="json") for a in result.approvals],
        "notice": result.notice,
        "budget_warning": result.budget_warning.model_dump(mode="json") if result.budget_warning else None,
    }


def completion(result: ChatResponse, *, model: str) -> dict[str, Any]:
    """A finished (or approval-waiting) turn as a ``chat.completion``."""
    content = result.message.content
    note = approval_note(result)
    if note:
        content = f"{content}\n\n{note}" if content else note
    return {
        "id": completion_id(result.turn_id),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": _FINISH.get(result.status, "stop"),
            }
        ],
        "usage": _usage(result),
        "keel": keel_extension(result),
    }


class ChunkWriter:
    """Keel's turn events (api/turn_stream.py) as ``chat.completion.chunk`` SSE data."""

    def __init__(self, *, turn_id: str, model: str, include_usage: bool) -> None:
        self._id = completion_id(turn_id)
        self._model = model
        self._created = int(time.time())
        self._include_usage = include_usage

    def chunk(
        self,
        delta: dict[str, Any],
        *,
        finish_reason: str | None = None,
        keel: dict[str, Any] | None = None,
    ) -> str:
        body: dict[str, Any] = {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": self._model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
        }
        if keel is not None:
            body["keel"] = keel
        return json.dumps(body, separators=(",", ":"))

    def translate(self, event: str, data: dict[str, Any]) -> tuple[list[str], bool]:
        """The chunks for one Keel event, and whether the stream ends after them."""
        if event == "turn.started":
            return [self.chunk({"role": "assistant", "content": ""})], False
        if event == "message.delta":
            return [self.chunk({"content": str(data.get("delta", ""))})], False
        if event == "error":
            message = str(data.get("message", "the turn failed"))
            code = str(data.get("code", "internal_error"))
            error = {"error": {"message": message, "type": "server_error", "param": None, "code": code}}
            return [json.dumps(error, separators=(",", ":"))], True
        if event == "approval.required":
            note = f"\n\nThis answer waits for approval of {data.get('tool')} (approval id {data.get('id')})."
            return [
                self.chunk({"content": note}, keel={"event": event, "approval": data}),
            ], False
        if event == "turn.completed":
            result = ChatResponse.model_validate(data)
            done = [
                self.chunk({}, finish_reason=_FINISH.get(result.status, "stop"), keel=keel_extension(result))
            ]
            if self._include_usage:
                done.append(
                    json.dumps(
                        {
                            "id": self._id,
                            "object": "chat.completion.chunk",
                            "created": self._created,
                            "model": self._model,
                            "choices": [],
                            "usage": _usage(result),
                        },
                        separators=(",", ":"),
                    )
                )
            return done, True
        # citation, message.reset, tool.*, budget.warning: Keel's own, in the extension only
        return [self.chunk({}, keel={"event": event, **data})], False

    def awaiting_approval_end(self, session_id: str) -> list[str]:
        """A live stream pauses at an approval (the native relay stops there): close the
        completion with ``stop``; the decision and the rest of the turn are Keel's API."""
        return [
            self.chunk(
                {}, finish_reason="stop", keel={"status": "awaiting_approval", "session_id": session_id}
            )
        ]
