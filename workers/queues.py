"""The task-queue groups a ``keel worker`` process may run (``--queues``), and the
options every worker shares.

Each group is a bulkhead: its own task queue and worker pool (docs/operations.md).

| group | task queue (setting) | what runs there |
|---|---|---|
| ``chat`` | ``KEEL_CHAT_TASK_QUEUE`` | the chat workflows, their local activities, the model call |
| ``retrieval`` | ``KEEL_RETRIEVAL_TASK_QUEUE`` | knowledge searches (embed the query, search the index) |
| ``tools`` | ``KEEL_TOOLS_TASK_QUEUE`` | MCP tool calls and tool discovery |
| ``ingest`` | ``KEEL_INGEST_TASK_QUEUE`` | document ingestion, deletes, sharing |
| ``audit`` | ``KEEL_AUDIT_TASK_QUEUE`` | audit retention and export, their schedules |
| ``slack`` | ``KEEL_SLACK_TASK_QUEUE`` | the Slack workflows (when ``KEEL_SLACK_BOT_TOKEN`` is set) |
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Final

from infra.settings import Settings

QUEUE_GROUPS: Final = ("chat", "retrieval", "tools", "ingest", "audit", "slack")
#: The groups that need the embedding model and the vector index in the process.
KNOWLEDGE_GROUPS: Final = frozenset({"retrieval", "ingest"})


class UnknownQueueGroup(ValueError):
    pass


def parse_queues(text: str | None) -> frozenset[str]:
    """``"chat,retrieval"`` → those groups; ``None``, ``""`` or ``"all"``: every group."""
    if text is None or text.strip() in ("", "all"):
        return frozenset(QUEUE_GROUPS)
    names = {part.strip() for part in text.split(",") if part.strip()}
    unknown = sorted(names - set(QUEUE_GROUPS))
    if unknown:
        raise UnknownQueueGroup(f"unknown queue group(s) {unknown}; known: {', '.join(QUEUE_GROUPS)}")
    return frozenset(names)


def task_queue_of(settings: Settings, group: str) -> str:
    queues = {
        "chat": settings.chat_task_queue,
        "retrieval": settings.retrieval_task_queue,
        "tools": settings.tools_task_queue,
        "ingest": settings.ingest_task_queue,
        "audit": settings.audit_task_queue,
        "slack": settings.slack_task_queue,
    }
    return queues[group]


def shutdown_options(settings: Settings) -> dict[str, Any]:
    """On shutdown a worker stops polling at once, lets running activities finish for
    ``KEEL_WORKER_SHUTDOWN_GRACE_S``, then cancels them; Temporal retries any attempt that
    did not finish (on another worker). Workflow tasks are never lost: they are replayed."""
    return {"graceful_shutdown_timeout": timedelta(seconds=settings.worker_shutdown_grace_s)}
