"""What Slack sends to an app, built for tests of Keel's Slack HTTP endpoints.

Slack POSTs three kinds of request to an app, each signed with the app's signing secret:

- Events API deliveries: a JSON body, the ``event_callback`` envelope around one event
  (``app_mention``, ``message``, ...), or the one-off ``url_verification`` challenge.
- Slash commands: a form body (``application/x-www-form-urlencoded``) of flat fields.
- Interactivity (button clicks, ``block_actions``): a form body with one field,
  ``payload=<json>``.

The builders return the body (a dict for JSON, bytes for forms); ``sign_request`` gives
the headers Slack adds. A test posts ``json.dumps(envelope).encode()`` or the form bytes
with ``sign_request(body, secret)`` and ``Content-Type`` as Slack does::

    event = app_mention_event("U1", "C1", "<@UBOT> hi", ts)
    body = json.dumps(event_callback(event, team_id="T0KEEL")).encode()
    headers = {"Content-Type": "application/json", **sign_request(body, SECRET)}

Field sets follow Slack's documented payloads and what bolt-python reads from them.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlencode

__all__ = [
    "app_mention_event",
    "block_actions_form",
    "event_callback",
    "message_event",
    "sign_request",
    "slash_command_form",
    "url_verification",
]

#: the deprecated verification token Slack still puts in payloads (apps should ignore it)
VERIFICATION_TOKEN = "verification-token-unused"


def sign_request(body: bytes, signing_secret: str, *, timestamp: int | None = None) -> dict[str, str]:
    """The headers Slack signs a request with (Slack's "v0" scheme).

    ``X-Slack-Signature`` is ``"v0=" + hex(HMAC-SHA256(secret, "v0:{timestamp}:{body}"))``
    over the raw body bytes; ``timestamp`` defaults to now (Slack's verifiers refuse one
    more than 5 minutes off).
    """
    ts = int(time.time()) if timestamp is None else timestamp
    base = b"v0:" + str(ts).encode() + b":" + body
    digest = hmac.new(signing_secret.encode(), base, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": str(ts), "X-Slack-Signature": f"v0={digest}"}


# --------------------------------------------------------------------------- #
# Events API
# --------------------------------------------------------------------------- #


def event_callback(
    event: Mapping[str, Any],
    *,
    team_id: str,
    api_app_id: str = "A0KEEL",
    event_id: str | None = None,
    event_time: int | None = None,
    bot_user_id: str = "UBOT",
) -> dict[str, Any]:
    """The Events API envelope (``type: event_callback``) around ``event``.

    ``authorizations`` names the installation the event is for (the bot user);
    ``event_id`` (``Ev...``) is fresh unless given: Slack's retries of one delivery
    carry the same one.
    """
    return {
        "token": VERIFICATION_TOKEN,
        "team_id": team_id,
        "context_team_id": team_id,
        "context_enterprise_id": None,
        "api_app_id": api_app_id,
        "event": dict(event),
        "type": "event_callback",
        "event_id": event_id or "Ev" + uuid.uuid4().hex[:10].upper(),
        "event_time": int(time.time()) if event_time is None else event_time,
        "authorizations": [
            {
                "enterprise_id": None,
                "team_id": team_id,
                "user_id": bot_user_id,
                "is_bot": True,
                "is_enterprise_install": False,
            }
        ],
        "is_ext_shared_channel": False,
        "event_context": "4-" + uuid.uuid4().hex,
    }


def url_verification(challenge: str) -> dict[str, Any]:
    """The one-off request Slack sends when the Events URL is set; the app echoes ``challenge``."""
    return {"token": VERIFICATION_TOKEN, "challenge": challenge, "type": "url_verification"}


def _rich_text(text: str) -> list[dict[str, Any]]:
    return [
        {
            "type": "rich_text",
            "block_id": uuid.uuid4().hex[:5],
            "elements": [{"type": "rich_text_section", "elements": [{"type": "text", "text": text}]}],
        }
    ]


def app_mention_event(
    user: str, channel: str, text: str, ts: str, thread_ts: str | None = None
) -> dict[str, Any]:
    """An ``app_mention`` event: a person wrote ``<@BOT>`` in a channel (``text`` includes it).

    Slack also sends a ``message`` event for the same ``ts`` to an app subscribed to
    channel messages.
    """
    event: dict[str, Any] = {
        "type": "app_mention",
        "client_msg_id": str(uuid.uuid4()),
        "user": user,
        "text": text,
        "ts": ts,
        "channel": channel,
        "event_ts": ts,
        "blocks": _rich_text(text),
    }
    if thread_ts is not None:
        event["thread_ts"] = thread_ts
    return event


def message_event(
    user: str,
    channel: str,
    text: str,
    ts: str,
    thread_ts: str | None = None,
    channel_type: str = "im",
    subtype: str | None = None,
    files: Sequence[Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """A ``message`` event (``message.im`` with ``channel_type="im"``, ``message.channels``
    with ``"channel"``, ``"group"`` for private channels).

    ``subtype`` is absent for a plain message; ``"file_share"`` with ``files`` (Slack file
    objects, e.g. from ``FakeSlack.add_file``) is a message with attachments.
    """
    event: dict[str, Any] = {
        "type": "message",
        "user": user,
        "text": text,
        "ts": ts,
        "channel": channel,
        "event_ts": ts,
        "channel_type": channel_type,
    }
    if subtype is None or subtype == "file_share":
        event["client_msg_id"] = str(uuid.uuid4())
        event["blocks"] = _rich_text(text)
    if subtype is not None:
        event["subtype"] = subtype
    if thread_ts is not None:
        event["thread_ts"] = thread_ts
    if files is not None:
        event["files"] = [dict(f) for f in files]
        event["upload"] = False
    return event


# --------------------------------------------------------------------------- #
# Slash commands and interactivity (form bodies)
# --------------------------------------------------------------------------- #


def slash_command_form(
    *,
    command: str = "/keel",
    text: str,
    user_id: str,
    channel_id: str,
    team_id: str,
    response_url: str,
    trigger_id: str | None = None,
    api_app_id: str = "A0KEEL",
    user_name: str = "user",
    channel_name: str = "general",
    team_domain: str = "keel-test",
) -> bytes:
    """The form body Slack POSTs for a slash command (``application/x-www-form-urlencoded``)."""
    fields = {
        "token": VERIFICATION_TOKEN,
        "team_id": team_id,
        "team_domain": team_domain,
        "channel_id": channel_id,
        "channel_name": channel_name,
        "user_id": user_id,
        "user_name": user_name,
        "command": command,
        "text": text,
        "api_app_id": api_app_id,
        "is_enterprise_install": "false",
        "response_url": response_url,
        "trigger_id": trigger_id or _trigger_id(),
    }
    return urlencode(fields).encode()


def block_actions_form(
    user_id: str,
    team_id: str,
    channel_id: str,
    message_ts: str,
    action_id: str,
    value: str,
    response_url: str,
    *,
    block_id: str = "actions",
    api_app_id: str = "A0KEEL",
    message: Mapping[str, Any] | None = None,
    is_ephemeral: bool = False,
    trigger_id: str | None = None,
) -> bytes:
    """The form body Slack POSTs when a person clicks a button: ``payload=<block_actions json>``.

    ``message`` is the message the button is on as Slack echoes it (by default a minimal
    bot message at ``message_ts``).
    """
    now = f"{time.time():.6f}"
    payload: dict[str, Any] = {
        "type": "block_actions",
        "user": {"id": user_id, "username": "user", "name": "user", "team_id": team_id},
        "api_app_id": api_app_id,
        "token": VERIFICATION_TOKEN,
        "container": {
            "type": "message",
            "message_ts": message_ts,
            "channel_id": channel_id,
            "is_ephemeral": is_ephemeral,
        },
        "trigger_id": trigger_id or _trigger_id(),
        "team": {"id": team_id, "domain": "keel-test"},
        "enterprise": None,
        "is_enterprise_install": False,
        "channel": {"id": channel_id, "name": "channel"},
        "message": dict(message) if message is not None else {"type": "message", "ts": message_ts},
        "state": {"values": {}},
        "response_url": response_url,
        "actions": [
            {
                "action_id": action_id,
                "block_id": block_id,
                "text": {"type": "plain_text", "text": value, "emoji": True},
                "value": value,
                "type": "button",
                "action_ts": now,
            }
        ],
    }
    return urlencode({"payload": json.dumps(payload)}).encode()


def _trigger_id() -> str:
    return f"{int(time.time())}.{uuid.uuid4().int % 10**12}.{uuid.uuid4().hex}"
