"""An estimate of a model request's prompt tokens, without the model's tokenizer.

Keel talks to whatever OpenAI-compatible model is configured and ships no
tokenizer per model, so the reservation estimates: ASCII text at
:data:`ASCII_CHARS_PER_TOKEN` characters per token (BPE vocabularies such as
OpenAI's ``o200k_base``/``cl100k_base`` run about 4 for English prose and 3-3.5
for code and JSON; 3.6 keeps prose over and code about even), every other character
as one token (CJK runs about 0.7-1 token per character; accented Latin letters
usually share a token), plus the chat template's tokens per message, per tool and
per request. Calibrated by ``bench/budget_estimate.py`` (reserved ÷ used, aim ≤ 1.5).

It is an estimate, not a bound: a prompt of unusual text (long digit runs, emoji)
may use more than estimated; the settlement records the server's real usage.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

from agent_framework import Content, Message

#: Characters per token of ASCII text (prose ~4, code/JSON ~3-3.5).
ASCII_CHARS_PER_TOKEN = 3.6
#: Chat-template tokens around one message (OpenAI's templates use 3-4).
PER_MESSAGE_OVERHEAD = 4
#: Template tokens around each tool definition.
PER_TOOL_OVERHEAD = 8
#: The request's own template tokens (the reply primer).
REQUEST_OVERHEAD = 3


def _chars(text: str | None) -> tuple[int, int]:
    """(ASCII characters, other characters)."""
    if not text:
        return 0, 0
    ascii_count = len(text.encode("ascii", "ignore"))
    return ascii_count, len(text) - ascii_count


def _json_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)


def _content_texts(content: Content) -> list[str | None]:
    kind = content.type
    if kind == "text":
        return [content.text]
    if kind == "function_call":
        return [content.name, content.call_id, _json_text(content.arguments or {})]
    if kind == "function_result":
        items = [item.text for item in content.items or [] if item.type == "text"]
        result = _json_text(content.result) if content.result is not None else None
        return [content.call_id, *items, result]
    # Anything else (not sent by Keel today): its full serialised form.
    return [_json_text(content.to_dict())]


def estimate_text_tokens(texts: Sequence[str | None]) -> int:
    ascii_count = other = 0
    for text in texts:
        a, o = _chars(text)
        ascii_count += a
        other += o
    return math.ceil(ascii_count / ASCII_CHARS_PER_TOKEN) + other


def prompt_token_estimate(messages: Sequence[Message], tool_schemas: Sequence[dict[str, Any]] = ()) -> int:
    """The estimated prompt tokens of a request with these messages and tools."""
    texts: list[str | None] = []
    total = REQUEST_OVERHEAD
    for message in messages:
        total += PER_MESSAGE_OVERHEAD
        texts.append(message.author_name)
        for content in message.contents:
            texts.extend(_content_texts(content))
    for schema in tool_schemas:
        total += PER_TOOL_OVERHEAD
        texts.append(_json_text(schema))
    return total + estimate_text_tokens(texts)
