"""Slack text and Block Kit for the bot's posts, within Slack's limits.

Limits (docs/slack.md): a ``markdown`` block or a stream's ``markdown_text`` holds
12,000 characters, a ``section`` 3,000, a message 50 blocks. Text from the model or
a document never pings anyone: ``<!here>``, ``<!channel>``, ``<@U…>`` and
``<!subteam^…>`` are broken up so Slack shows them as text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

from core.models.chat import Citation
from core.models.slack import VisibilityRule

SECTION_MAX = 3000
_MENTION = re.compile(r"<([!@#])")
_ZWSP = "\u200b"


def neutralize(text: str) -> str:
    """Model or document text as Slack will show it, with no mention or broadcast in it."""
    return _MENTION.sub(lambda m: f"<{_ZWSP}{m.group(1)}", text)


def escape_mrkdwn(text: str) -> str:
    """Text inside a ``mrkdwn`` field (titles in links): Slack's three escapes, and no ``|``."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("|", "¦")


def split_text(text: str, limit: int) -> list[str]:
    """Pieces of at most ``limit`` characters, cut at a paragraph, a line or a space when
    one is in the second half of the piece (so a word or a code line is rarely cut)."""
    pieces: list[str] = []
    rest = text
    while len(rest) > limit:
        window = rest[:limit]
        cut = max(window.rfind("\n\n"), -1)
        if cut < limit // 2:
            cut = window.rfind("\n")
        if cut < limit // 2:
            cut = window.rfind(" ")
        if cut < limit // 2:
            cut = limit
        pieces.append(rest[:cut])
        rest = rest[cut:].lstrip("\n ")
    pieces.append(rest)
    return pieces


def document_url(web_base_url: str, document_id: str) -> str:
    """The document in the web UI (docs/web.md: ``/documents?doc=<id>`` opens its knowledge
    base and highlights it)."""
    return f"{web_base_url.rstrip('/')}/documents?doc={quote(document_id, safe='')}"


RULE_TEXT: dict[VisibilityRule, str] = {
    "dm": "Searched with your own access.",
    "channel": "Searched only documents every member of this channel may read.",
    "public": "Searched only documents everyone in the organisation may read (anyone can read this channel).",
    "guest": "No documents were searched for this channel (a guest is in it).",
    "external": "No documents were searched for this channel (it is shared with another organisation).",
    "large": "No documents were searched for this channel (it is too large to check every member).",
}


def footer_blocks(
    citations: Sequence[Citation], *, rule: VisibilityRule, web_base_url: str, searched: bool = True
) -> list[dict[str, Any]]:
    """The sources (title linked to the document in the web UI) and which rule applied."""
    blocks: list[dict[str, Any]] = []
    seen: dict[str, str] = {}
    for c in citations:
        seen.setdefault(c.document_id, c.title)
    if seen:
        lines = [
            f"{n}. <{document_url(web_base_url, doc_id)}|{escape_mrkdwn(neutralize(title)[:150])}>"
            for n, (doc_id, title) in enumerate(seen.items(), start=1)
        ]
        text = "*Sources*\n" + "\n".join(lines)
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": text[:SECTION_MAX]}})
    rule_text = RULE_TEXT[rule] if searched or rule in ("guest", "external", "large") else RULE_TEXT["guest"]
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": rule_text}]})
    return blocks


def answer_blocks(text: str) -> list[dict[str, Any]]:
    return [{"type": "markdown", "text": text or " "}]


def notification_text(text: str) -> str:
    """The plain ``text`` of a message (notifications, screen readers)."""
    return (text[:280] + "…") if len(text) > 280 else (text or " ")


def _arguments_text(arguments: dict[str, Any]) -> str:
    rendered = json.dumps(arguments, indent=2, ensure_ascii=False, sort_keys=True)
    if len(rendered) > 2500:
        rendered = rendered[:2500] + "\n… (truncated; the full call is in Keel)"
    return "```" + neutralize(rendered).replace("```", f"`{_ZWSP}`{_ZWSP}`") + "```"


def approval_blocks(
    *, approval_id: str, tool: str, arguments: dict[str, Any], requester: str, reason: str | None
) -> list[dict[str, Any]]:
    """The request an approver decides: the tool, its frozen arguments, Approve / Deny."""
    why = f"\n_{escape_mrkdwn(neutralize(reason))}_" if reason else ""
    confirm = {
        "title": {"type": "plain_text", "text": "Are you sure?"},
        "confirm": {"type": "plain_text", "text": "Yes"},
        "deny": {"type": "plain_text", "text": "Cancel"},
    }
    return [
        {
            "type": "section",
            "text": {
                "type": "mrkdwn",
                "text": f"*{escape_mrkdwn(requester)}* wants to run the tool `{escape_mrkdwn(tool)}`{why}",
            },
        },
        {"type": "section", "text": {"type": "mrkdwn", "text": _arguments_text(arguments)}},
        {
            "type": "actions",
            "block_id": "keel_approval",
            "elements": [
                {
                    "type": "button",
                    "action_id": "keel_approve",
                    "text": {"type": "plain_text", "text": "Approve"},
                    "style": "primary",
                    "value": approval_id,
                    "confirm": {
                        **confirm,
                        "text": {"type": "mrkdwn", "text": f"Run `{tool}` with these arguments?"},
                    },
                },
                {
                    "type": "button",
                    "action_id": "keel_deny",
                    "text": {"type": "plain_text", "text": "Deny"},
                    "style": "danger",
                    "value": approval_id,
                    "confirm": {**confirm, "text": {"type": "mrkdwn", "text": f"Deny `{tool}`?"}},
                },
            ],
        },
    ]


_SLACK_MENTION = re.compile(r"^<@[A-Z0-9]{2,20}>$")


def _who(decided_by: str | None) -> str:
    """Who decided: a Slack mention we made (``<@U…>``) as is, any other name escaped."""
    if decided_by and _SLACK_MENTION.match(decided_by):
        return decided_by
    return escape_mrkdwn(decided_by or "someone")


DECIDED_TEXT = {"approved": "✅ Approved by {who}", "denied": "❌ Denied by {who}", "expired": "⌛ Expired"}


def decided_blocks(
    *, tool: str, arguments: dict[str, Any], status: str, decided_by: str | None
) -> list[dict[str, Any]]:
    """The approval message once decided: the same request, the buttons replaced by who decided."""
    line = DECIDED_TEXT.get(status, status).format(who=_who(decided_by))
    return [
        {"type": "section", "text": {"type": "mrkdwn", "text": f"Tool `{escape_mrkdwn(tool)}`"}},
        {"type": "section", "text": {"type": "mrkdwn", "text": _arguments_text(arguments)}},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": line}]},
    ]
