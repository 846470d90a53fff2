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


KIND_SLACK = "slack"


def _digest(*parts: str) -> str:
    import hashlib

    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]


def slack_turn_workflow_id(team_id: str, channel_id: str, message_ts: str) -> str:
    """One per Slack message: an ``app_mention`` and the ``message`` for the same ts, and
    Slack's retried deliveries of either, are the same workflow (docs/slack.md, Dedup)."""
    return f"slack-turn-{team_id}-{channel_id}-{message_ts}"


def slack_command_workflow_id(team_id: str, trigger_id: str) -> str:
    return f"slack-command-{team_id}-{_digest(trigger_id)}"


def slack_file_workflow_id(team_id: str, file_id: str) -> str:
    return f"slack-file-{team_id}-{file_id}"


def slack_action_workflow_id(team_id: str, approval_id: str, slack_user_id: str, action_ts: str) -> str:
    """One click on an approval button (a redelivery of the same click is the same workflow)."""
    return f"slack-approval-{team_id}-{approval_id}-{slack_user_id}-{_digest(action_ts)}"


def slack_turn_id(team_id: str, channel_id: str, message_ts: str) -> str:
    """The chat turn (Update id) of a Slack message: the same message is the same turn."""
    return _digest("slack-turn", team_id, channel_id, message_ts)


def slack_session_id(
    team_id: str, channel_id: str, thread_ts: str, user_id: str, generation: str = ""
) -> str:
    """The Keel session of one person in one Slack thread (``generation`` rotates ``/keel ask``'s)."""
    return "slack-" + _digest("slack-session", team_id, channel_id, thread_ts, user_id, generation)
