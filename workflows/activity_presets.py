"""Named activity-option presets: timeouts and RetryPolicy per dependency family.

docs/resilience.md tables these numbers and what follows when they are spent.
Provider SDK retries are off everywhere, so the RetryPolicy here is the only retry
layer and every attempt shows in history.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio.common import RetryPolicy

from core.errors import NON_RETRYABLE

_NON_RETRYABLE_TYPES = sorted(str(code) for code in NON_RETRYABLE)


def _options(
    *,
    timeout: timedelta,
    attempts: int,
    first_retry: timedelta,
    max_interval: timedelta | None = None,
    heartbeat: timedelta | None = None,
) -> dict[str, Any]:
    options: dict[str, Any] = {
        "start_to_close_timeout": timeout,
        "retry_policy": RetryPolicy(
            initial_interval=first_retry,
            backoff_coefficient=2.0,
            maximum_interval=max_interval,
            maximum_attempts=attempts,
            non_retryable_error_types=_NON_RETRYABLE_TYPES,
        ),
    }
    if heartbeat is not None:
        options["heartbeat_timeout"] = heartbeat
    return options


_S = timedelta(seconds=1)

#: Postgres/Redis writes of our own: short, retried generously (they are idempotent).
DATABASE = _options(timeout=10 * _S, attempts=10, first_retry=_S / 5, max_interval=10 * _S)

#: One streamed model call: 120 s, 3 attempts with exponential backoff.
#: The heartbeat timeout lets a crashed worker's attempt be retried within seconds.
LLM_STREAM = _options(timeout=120 * _S, attempts=3, first_retry=_S, max_interval=20 * _S, heartbeat=10 * _S)

#: Parse + chunk one document: long (big PDFs), heartbeating while it parses.
PARSE = _options(timeout=15 * 60 * _S, attempts=3, first_retry=_S, max_interval=30 * _S, heartbeat=30 * _S)

#: Embed + upsert in batches; heartbeats carry the next chunk index to resume from.
INDEX = _options(timeout=60 * 60 * _S, attempts=5, first_retry=_S, max_interval=30 * _S, heartbeat=30 * _S)

#: One Qdrant call (search, payload update, delete): 10 s, retried once.
VECTOR = _options(timeout=10 * _S, attempts=2, first_retry=_S / 2)

#: One audit batch to a webhook/syslog sink, or one retention batch: 60 s, 5 attempts;
#: the next schedule run carries on after that.
AUDIT_BATCH = _options(timeout=60 * _S, attempts=5, first_retry=2 * _S, max_interval=60 * _S)


#: One Slack Web API call (a post, a lookup): 30 s, 8 attempts. A 429 waits Slack's
#: ``Retry-After`` instead of the backoff (the activity sets its next retry delay).
SLACK_CALL = _options(timeout=30 * _S, attempts=8, first_retry=_S, max_interval=60 * _S)


#: Downloading a shared file from Slack into the blob store (up to KEEL_INGEST_MAX_FILE_BYTES).
SLACK_DOWNLOAD = _options(timeout=5 * 60 * _S, attempts=5, first_retry=2 * _S, max_interval=60 * _S)


def slack_relay(*, timeout_s: int) -> dict[str, Any]:
    """Streaming one turn into Slack: as long as the turn may take (approvals included),
    heartbeating; a retry (after a crash or a 429) goes on from its checkpoint."""
    return _options(
        timeout=timeout_s * _S, attempts=10, first_retry=_S, max_interval=60 * _S, heartbeat=30 * _S
    )


def tool_call(*, timeout_s: int, max_retries: int) -> dict[str, Any]:
    """One MCP tool call: the tool's own timeout and retry count (from its allowlist entry)."""
    return _options(timeout=timeout_s * _S, attempts=max_retries + 1, first_retry=_S, max_interval=30 * _S)
