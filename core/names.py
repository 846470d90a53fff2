"""Names shared by every process: task queues, workflow ids, search attributes.

Workflow ids are deterministic so a retried API call never starts a second copy.
"""

from __future__ import annotations

CHAT_TASK_QUEUE = "keel-chat"

SEARCH_ATTR_USER_ID = "KeelUserId"
SEARCH_ATTR_SESSION_ID = "KeelSessionId"
SEARCH_ATTR_KIND = "KeelKind"
SEARCH_ATTRIBUTES = (SEARCH_ATTR_USER_ID, SEARCH_ATTR_SESSION_ID, SEARCH_ATTR_KIND)

KIND_CHAT = "chat"


def chat_workflow_id(session_id: str) -> str:
    return f"chat-{session_id}"


def turn_stream_key(turn_id: str) -> str:
    """Redis stream that carries one turn's events (deltas, tool calls, completion)."""
    return f"keel:turn:{turn_id}:events"


INGEST_TASK_QUEUE = "keel-ingest"
KIND_INGEST = "ingest"


def ingest_workflow_id(document_id: str) -> str:
    return f"ingest-{document_id}"


def batch_workflow_id(batch_id: str) -> str:
    return f"batch-{batch_id}"


def delete_workflow_id(document_id: str) -> str:
    return f"delete-{document_id}"


def acl_workflow_id(document_id: str, request_id: str) -> str:
    return f"acl-{document_id}-{request_id}"


def tool_discovery_workflow_id(server_id: str) -> str:
    return f"tools-{server_id}"


KIND_KNOWLEDGE_QUERY = "knowledge-query"


def knowledge_query_workflow_id(request_id: str) -> str:
    """One per ``POST /knowledge-bases/{id}/query`` request (a read: nothing to deduplicate)."""
    return f"kbquery-{request_id}"
