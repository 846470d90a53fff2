"""A strict upper bound of a model request's prompt tokens, without a tokenizer.

Every token of a byte-level BPE vocabulary (OpenAI's, Llama's, Mistral's …)
decodes to at least one byte, so a text of N UTF-8 bytes is at most N tokens.
The bound is the UTF-8 bytes of every text the request carries (message
contents, tool-call names, ids and arguments, tool results, tool schemas as
JSON) plus a fixed allowance per message, per tool and per request for the chat
template's own tokens (role markers, separators). It is conservative: real
English text is about 4 bytes per token, so near the limit a call may be refused
(or granted a shorter answer) although it would have fitted.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from agent_framework import Content, Message

#: Chat-template tokens around one message (OpenAI uses 3-4; generous for other templates).
PER_MESSAGE_OVERHEAD = 8
#: Template tokens around each tool definition.
PER_TOOL_OVERHEAD = 16
#: The request's own template tokens (the reply primer, the tools preamble).
REQUEST_OVERHEAD = 32


def _bytes(text: str | None) -> int:
    return len(text.encode("utf-8")) if text else 0


def _json_bytes(value: Any) -> int:
    """JSON with ``ensure_ascii`` is never shorter than the UTF-8 of any other JSON spelling."""
    if isinstance(value, str):
        return _bytes(value)
    return len(json.dumps(value, ensure_ascii=True, default=str).encode("ascii"))


def _content_bytes(content: Content) -> int:
    kind = content.type
    if kind == "text":
        return _bytes(content.text)
    if kind == "function_call":
        return _bytes(content.name) + _bytes(content.call_id) + _json_bytes(content.arguments or {})
    if kind == "function_result":
        items = sum(_bytes(item.text) + 1 for item in content.items or [] if item.type == "text")
        result = _json_bytes(content.result) if content.result is not None else 0
        return _bytes(content.call_id) + items + result
    # Anything else (not sent by Keel today): its full serialised form.
    return _json_bytes(content.to_dict())


def prompt_token_bound(messages: Sequence[Message], tool_schemas: Sequence[dict[str, Any]] = ()) -> int:
    """An upper bound of the prompt tokens of a request with these messages and tools."""
    total = REQUEST_OVERHEAD
    for message in messages:
        total += PER_MESSAGE_OVERHEAD + _bytes(str(message.role)) + _bytes(message.author_name)
        total += sum(_content_bytes(c) for c in message.contents)
        total += len(message.contents)  # separators between joined parts
    for schema in tool_schemas:
        total += PER_TOOL_OVERHEAD + _json_bytes(schema)
    return total
