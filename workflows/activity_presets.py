"""Named activity-option presets: timeouts and RetryPolicy per dependency family.

The numbers are DESIGN.md §7. Provider SDK retries are off everywhere, so the
RetryPolicy here is the only retry layer and every attempt shows in history.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio.common import RetryPolicy

from core.errors import NON_RETRYABLE

_NON_RETRYABLE_TYPES = sorted(str(code) for code in NON_RETRYABLE)

#: Postgres/Redis writes of our own: short, retried generously (they are idempotent).
DATABASE: dict[str, Any] = {
    "start_to_close_timeout": timedelta(seconds=10),
    "retry_policy": RetryPolicy(
        initial_interval=timedelta(milliseconds=200),
        backoff_coefficient=2.0,
        maximum_interval=timedelta(seconds=10),
        maximum_attempts=10,
        non_retryable_error_types=_NON_RETRYABLE_TYPES,
    ),
}

#: One streamed model call: 120 s, 3 attempts with exponential backoff.
#: The heartbeat timeout lets a crashed worker's attempt be retried within seconds.
LLM_STREAM: dict[str, Any] = {
    "start_to_close_timeout": timedelta(seconds=120),
    "heartbeat_timeout": timedelta(seconds=10),
    "retry_policy": RetryPolicy(
        initial_interval=timedelta(seconds=1),
        backoff_coefficient=2.0,
        maximum_interval=timedelta(seconds=20),
        maximum_attempts=3,
        non_retryable_error_types=_NON_RETRYABLE_TYPES,
    ),
}

#: Parse + chunk one document: long (big PDFs), heartbeating while it parses.
PARSE: dict[str, Any] = {
    "start_to_close_timeout": timedelta(minutes=15),
    "heartbeat_timeout": timedelta(seconds=30),
    "retry_policy": RetryPolicy(
        initial_interval=timedelta(seconds=1),
        backoff_coefficient=2.0,
        maximum_interval=timedelta(seconds=30),
        maximum_attempts=3,
        non_retryable_error_types=_NON_RETRYABLE_TYPES,
    ),
}

#: Embed + upsert in batches; heartbeats carry the next chunk index to resume from.
INDEX: dict[str, Any] = {
    "start_to_close_timeout": timedelta(minutes=60),
    "heartbeat_timeout": timedelta(seconds=30),
    "retry_policy": RetryPolicy(
        initial_interval=timedelta(seconds=1),
        backoff_coefficient=2.0,
        maximum_interval=timedelta(seconds=30),
        maximum_attempts=5,
        non_retryable_error_types=_NON_RETRYABLE_TYPES,
    ),
}

#: One Qdrant call (search, payload update, delete): 10 s, retried once (DESIGN.md §7).
VECTOR: dict[str, Any] = {
    "start_to_close_timeout": timedelta(seconds=10),
    "retry_policy": RetryPolicy(
        initial_interval=timedelta(milliseconds=500),
        maximum_attempts=2,
        non_retryable_error_types=_NON_RETRYABLE_TYPES,
    ),
}


def tool_call(*, timeout_s: int, max_retries: int) -> dict[str, Any]:
    """One MCP tool call: the tool's own timeout and retry count (from its allowlist entry)."""
    return {
        "start_to_close_timeout": timedelta(seconds=timeout_s),
        "retry_policy": RetryPolicy(
            initial_interval=timedelta(seconds=1),
            backoff_coefficient=2.0,
            maximum_interval=timedelta(seconds=30),
            maximum_attempts=max_retries + 1,
            non_retryable_error_types=_NON_RETRYABLE_TYPES,
        ),
    }
