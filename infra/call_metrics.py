"""Prometheus metrics of the calls a turn makes and of what turns and ingestions end as.

Recorded where the calls happen (the worker's activities; :mod:`infra.call_spans` opens
the span and records the call's metrics in one ``with``), in the default registry like
every ``keel_*`` metric. A Grafana dashboard and alert rules use these exact names and
labels (docs/observability.md lists them): add, never rename.

A retried activity counts each attempt's request (an attempt is a real call), but a
turn, session, query or document is counted once: after the write that records it, and
for turns and sessions only when that write changed something (a retry finds it done).
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

#: Model calls take seconds to minutes; the buckets reach the 120 s start-to-close timeout.
_LLM_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0, 120.0)
_TTFT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0)
_FAST_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

LLM_REQUEST_DURATION = Histogram(
    "keel_llm_request_duration_seconds",
    "One model call (an activity attempt), by model and outcome (ok, error, cancelled)",
    ["model", "outcome"],
    buckets=_LLM_BUCKETS,
)
LLM_TIME_TO_FIRST_TOKEN = Histogram(
    "keel_llm_time_to_first_token_seconds",
    "From sending a model call to its first streamed text",
    ["model"],
    buckets=_TTFT_BUCKETS,
)
RETRIEVAL_DURATION = Histogram(
    "keel_retrieval_duration_seconds",
    "One knowledge search (embed + vector search + ACL check), by outcome (ok, error, cancelled)",
    ["outcome"],
    buckets=_FAST_BUCKETS,
)
RETRIEVAL_RESULTS = Histogram(
    "keel_retrieval_results",
    "Chunks a successful knowledge search returned",
    buckets=(0, 1, 2, 5, 10, 20, 50),
)
TOOL_CALLS = Counter(
    "keel_tool_calls_total",
    "MCP tool calls, by server name, tool (its name on the server) and outcome (ok, error, timeout)",
    ["server", "tool", "outcome"],
)
TOOL_CALL_DURATION = Histogram(
    "keel_tool_call_duration_seconds", "One MCP tool call", ["server", "tool"], buckets=_FAST_BUCKETS
)
TURNS = Counter(
    "keel_turns_total",
    "Chat turns by final status (completed, failed, cancelled, awaiting_approval)",
    ["outcome"],
)
SESSIONS_STARTED = Counter("keel_sessions_started_total", "Chat sessions whose first turn began")
KNOWLEDGE_QUERIES = Counter("keel_knowledge_queries_total", "Direct knowledge-base queries answered")
DOCUMENTS_INGESTED = Counter(
    "keel_documents_ingested_total",
    "Documents whose ingestion ended, by outcome (ready, failed)",
    ["outcome"],
)
