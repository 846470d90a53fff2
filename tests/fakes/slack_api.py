"""A local fake of Slack's Web API, at the wire, for tests of Keel's Slack bot.

Production code keeps ``slack_sdk.web.async_client.AsyncWebClient`` and slack-bolt;
only the base URL changes (``AsyncWebClient(token=..., base_url=fake.api_url)``).
The fake answers like slack.com does: ``POST|GET /api/<method>``, parameters from the
query string, a form body or a JSON body (slack_sdk sends ``chat.*`` as JSON), the bot
token in ``Authorization: Bearer ...`` (or a ``token`` parameter), and every error as
HTTP 200 ``{"ok": false, "error": "..."}`` except rate limits (HTTP 429 with
``Retry-After``).

Methods: ``api.test``, ``auth.test``, ``users.info``, ``users.lookupByEmail``,
``conversations.info``, ``conversations.members``, ``chat.postMessage``,
``chat.postEphemeral``, ``chat.update``, ``chat.delete``, ``chat.startStream``, ``chat.appendStream``,
``chat.stopStream``, ``assistant.threads.setStatus``, ``files.info``; anything else is
``unknown_method``. Besides the API it serves the private file downloads that
``files.info`` points at (``/files-pri/...``) and ``response_url`` targets
(``/response/<key>``).

Use::

    with FakeSlack() as slack:
        slack.add_user("U1", email="ada@example.com")
        slack.add_channel("D1", is_im=True, user="U1")
        client = AsyncWebClient(token=slack.bot_token, base_url=slack.api_url, retry_handlers=[])
        await client.chat_postMessage(channel="D1", text="hi")
        assert slack.messages("D1")[0].text == "hi"

Limits checked as Slack does (guesses marked where Slack's docs name no error code):
50 blocks, section text 3,000, section fields 10 x 2,000, header 150, ``markdown`` block
12,000 (per block, as measured by others), context 10 elements, actions 25 elements,
message text 40,000 (``msg_too_long``), stream ``markdown_text`` 12,000 per call
(``invalid_arguments``: a guess).

The sender-side builders (signed Events API, slash command and interactivity bodies)
live in ``tests.fakes.slack_payloads`` and are re-exported here.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import parse_qsl, quote

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from tests.fakes.slack_payloads import (
    app_mention_event,
    block_actions_form,
    event_callback,
    message_event,
    sign_request,
    slash_command_form,
    url_verification,
)
from tests.fakes.threaded_server import ThreadedServer

__all__ = [
    "AssistantStatus",
    "Call",
    "Edit",
    "FakeSlack",
    "FileDownload",
    "Message",
    "ResponsePost",
    "app_mention_event",
    "block_actions_form",
    "event_callback",
    "message_event",
    "sign_request",
    "slash_command_form",
    "url_verification",
]

MAX_BLOCKS = 50
MAX_SECTION_TEXT = 3_000
MAX_SECTION_FIELDS = 10
MAX_SECTION_FIELD_TEXT = 2_000
MAX_HEADER_TEXT = 150
MAX_MARKDOWN_BLOCK = 12_000
MAX_CONTEXT_ELEMENTS = 10
MAX_ACTIONS_ELEMENTS = 25
MAX_BLOCK_ID = 255
MAX_TEXT = 40_000
MAX_STREAM_TEXT = 12_000
MAX_LOADING_MESSAGES = 10

#: methods a ``rate_limit`` applies to (keyed by their ``channel`` parameter)
POSTING_METHODS = frozenset(
    {
        "chat.postMessage",
        "chat.update",
        "chat.delete",
        "chat.postEphemeral",
        "chat.startStream",
        "chat.appendStream",
        "chat.stopStream",
    }
)
LOGIN_PAGE = "<html>sign in</html>"


# --------------------------------------------------------------------------- #
# What tests read
# --------------------------------------------------------------------------- #


@dataclass(frozen=True)
class Call:
    """One Web API call as the fake saw and answered it."""

    method: str
    #: query string, form and JSON body merged (JSON values keep their types)
    params: dict[str, Any]
    #: request headers, names lower-cased
    headers: dict[str, str]
    #: ``time.monotonic()`` when it was answered
    at: float
    http_status: int
    response: dict[str, Any]
    #: refused by a ``rate_limit`` (HTTP 429 with ``Retry-After: retry_after_s``)
    rate_limited: bool = False
    retry_after_s: int | None = None

    @property
    def ok(self) -> bool:
        return bool(self.response.get("ok"))

    @property
    def error(self) -> str | None:
        err = self.response.get("error")
        return str(err) if err is not None else None


@dataclass(frozen=True)
class Edit:
    """A message's content before one ``chat.update``."""

    text: str
    blocks: list[dict[str, Any]] | None
    at: float


@dataclass
class Message:
    """A message in the fake's workspace, as it stands now (tests get copies)."""

    channel: str
    ts: str
    text: str
    user: str
    bot_id: str | None = None
    blocks: list[dict[str, Any]] | None = None
    attachments: list[dict[str, Any]] | None = None
    thread_ts: str | None = None
    unfurl_links: bool | None = None
    unfurl_media: bool | None = None
    mrkdwn: bool | None = None
    metadata: dict[str, Any] | None = None
    #: ``chat.postEphemeral``: only ``recipient`` sees it
    ephemeral: bool = False
    recipient: str | None = None
    #: posted by ``chat.startStream``; ``streaming`` while append/stop are accepted
    stream: bool = False
    streaming: bool = False
    expired: bool = False
    recipient_user_id: str | None = None
    recipient_team_id: str | None = None
    #: stream chunks other than ``markdown_text`` (task/plan updates, blocks), in order
    chunks: list[dict[str, Any]] = field(default_factory=list)
    session_status: str | None = None
    #: earlier versions, oldest first (one per ``chat.update``)
    edits: list[Edit] = field(default_factory=list)

    def as_slack(self, team_id: str) -> dict[str, Any]:
        """The message object Slack returns in ``message``."""
        out: dict[str, Any] = {"type": "message", "text": self.text, "user": self.user, "ts": self.ts}
        if self.bot_id:
            out |= {"bot_id": self.bot_id, "app_id": "A0KEEL", "team": team_id}
        for name in ("blocks", "attachments", "thread_ts", "metadata"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        if self.edits:
            out["edited"] = {"user": self.user, "ts": self.ts}
        return out


@dataclass(frozen=True)
class FileDownload:
    """One GET of a file's private URL; ``served`` is False when the login page came back."""

    file_id: str
    path: str
    authorization: str | None
    served: bool
    at: float


@dataclass(frozen=True)
class ResponsePost:
    """What an app POSTed to a ``response_url`` (``body`` parsed when it was JSON)."""

    key: str
    body: Any
    raw: bytes
    headers: dict[str, str]
    at: float


@dataclass(frozen=True)
class AssistantStatus:
    """One ``assistant.threads.setStatus`` call (``status=""`` clears it)."""

    channel_id: str
    thread_ts: str
    status: str
    loading_messages: list[str] | None
    at: float


# --------------------------------------------------------------------------- #
# Errors and parameters
# --------------------------------------------------------------------------- #


class _SlackError(Exception):
    """An ``ok: false`` answer; ``messages`` go to ``response_metadata.messages``."""

    def __init__(self, error: str, *messages: str, errors: Sequence[str] = ()) -> None:
        super().__init__(error)
        self.error = error
        self.messages = [f"[ERROR] {m}" for m in messages]
        self.errors = list(errors)

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"ok": False, "error": self.error}
        if self.errors:
            out["errors"] = self.errors
        if self.messages:
            out["response_metadata"] = {"messages": self.messages}
        return out


def _str(params: dict[str, Any], name: str) -> str | None:
    value = params.get(name)
    if value is None or value == "":
        return None
    return str(value)


def _bool(value: Any) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    return str(value).strip().lower() in {"1", "true", "yes"}


def _json_param(params: dict[str, Any], name: str, format_error: str) -> Any:
    """A JSON-typed parameter: as sent in a JSON body, or a JSON string in a form."""
    value = params.get(name)
    if not isinstance(value, str):
        return value
    if value == "":
        return None
    try:
        return json.loads(value)
    except ValueError:
        raise _SlackError(format_error) from None


def _text_len(obj: Any) -> int:
    return len(str(obj.get("text", ""))) if isinstance(obj, dict) else len(str(obj or ""))


_TOO_LONG = "must be less than {} characters [json-pointer:{}]"
_TOO_MANY = "no more than {} items allowed [json-pointer:{}]"


def _section_errors(block: dict[str, Any], ptr: str) -> list[str]:
    errors = []
    if _text_len(block.get("text")) > MAX_SECTION_TEXT:
        errors.append(_TOO_LONG.format(MAX_SECTION_TEXT + 1, f"{ptr}/text/text"))
    fields = block.get("fields") or []
    if len(fields) > MAX_SECTION_FIELDS:
        errors.append(_TOO_MANY.format(MAX_SECTION_FIELDS, f"{ptr}/fields"))
    for j, f in enumerate(fields):
        if _text_len(f) > MAX_SECTION_FIELD_TEXT:
            errors.append(_TOO_LONG.format(MAX_SECTION_FIELD_TEXT + 1, f"{ptr}/fields/{j}/text"))
    return errors


def _one_block_errors(block: dict[str, Any], ptr: str) -> list[str]:
    kind = block["type"]
    errors = _section_errors(block, ptr) if kind == "section" else []
    if kind == "header" and _text_len(block.get("text")) > MAX_HEADER_TEXT:
        errors.append(_TOO_LONG.format(MAX_HEADER_TEXT + 1, f"{ptr}/text/text"))
    if kind == "markdown" and len(str(block.get("text", ""))) > MAX_MARKDOWN_BLOCK:
        errors.append(_TOO_LONG.format(MAX_MARKDOWN_BLOCK + 1, f"{ptr}/text"))
    most = {"context": MAX_CONTEXT_ELEMENTS, "actions": MAX_ACTIONS_ELEMENTS}.get(kind)
    if most is not None and len(block.get("elements") or []) > most:
        errors.append(_TOO_MANY.format(most, f"{ptr}/elements"))
    if len(str(block.get("block_id", ""))) > MAX_BLOCK_ID:
        errors.append(_TOO_LONG.format(MAX_BLOCK_ID + 1, f"{ptr}/block_id"))
    return errors


def _block_errors(blocks: list[Any]) -> list[str]:
    """Block Kit limit violations, worded like Slack's ``[json-pointer:...]`` messages."""
    errors = [_TOO_MANY.format(MAX_BLOCKS, "/blocks")] if len(blocks) > MAX_BLOCKS else []
    for i, block in enumerate(blocks):
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            errors.append(f"missing required field: type [json-pointer:/blocks/{i}]")
        else:
            errors.extend(_one_block_errors(block, f"/blocks/{i}"))
    return errors


def _blocks(params: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The ``blocks`` parameter, checked against Block Kit's limits (``invalid_blocks``)."""
    blocks = _json_param(params, "blocks", "invalid_blocks_format")
    if blocks is None:
        return None
    if not isinstance(blocks, list):
        raise _SlackError("invalid_blocks_format")
    errors = _block_errors(blocks)
    if errors:
        raise _SlackError("invalid_blocks", *errors, errors=errors)
    return blocks


def _content(params: dict[str, Any]) -> tuple[str | None, list[dict[str, Any]] | None, Any]:
    """``text``, ``blocks`` and ``attachments`` of a posted message, validated like Slack."""
    text = _str(params, "text")
    blocks = _blocks(params)
    attachments = _json_param(params, "attachments", "invalid_attachments")
    if text is None and not blocks and not attachments:
        raise _SlackError("no_text")
    if text is not None and len(text) > MAX_TEXT:
        raise _SlackError("msg_too_long")
    return text, blocks, attachments


def _stream_text(params: dict[str, Any], *, required: bool) -> tuple[str, list[dict[str, Any]]]:
    """The text a stream call adds (``markdown_text`` plus ``markdown_text`` chunks) and its other chunks."""
    text = _str(params, "markdown_text") or ""
    chunks = _json_param(params, "chunks", "invalid_arguments") or []
    if not isinstance(chunks, list):
        raise _SlackError("invalid_arguments", "must be an array [json-pointer:/chunks]")
    others: list[dict[str, Any]] = []
    for chunk in chunks:
        if isinstance(chunk, dict) and chunk.get("type") == "markdown_text":
            text += str(chunk.get("text", ""))
        elif isinstance(chunk, dict):
            others.append(chunk)
    if required and "markdown_text" not in params and "chunks" not in params:
        raise _SlackError("invalid_arguments", "missing required field: markdown_text")
    if len(text) > MAX_STREAM_TEXT:
        raise _SlackError("invalid_arguments", _TOO_LONG.format(MAX_STREAM_TEXT + 1, "/markdown_text"))
    return text, others


async def _read_params(request: Request) -> dict[str, Any]:
    params: dict[str, Any] = dict(request.query_params)
    body = await request.body()
    if not body:
        return params
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "application/json":
        try:
            data = json.loads(body)
        except ValueError:
            raise _SlackError("invalid_json") from None
        if not isinstance(data, dict):
            raise _SlackError("invalid_json")
        params.update(data)
    else:
        params.update(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    return params


# --------------------------------------------------------------------------- #
# Workspace state
# --------------------------------------------------------------------------- #


@dataclass
class _Channel:
    id: str
    name: str | None
    members: list[str]
    is_im: bool
    is_private: bool
    is_mpim: bool
    user: str | None
    created: int = field(default_factory=lambda: int(time.time()))
    #: Slack Connect: shared with another organisation's workspace
    is_ext_shared: bool = False

    def as_slack(self, bot_user_id: str) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "created": self.created,
            "is_archived": False,
            "is_im": self.is_im,
            "is_mpim": self.is_mpim,
            "is_private": self.is_private,
            "is_channel": not (self.is_im or self.is_mpim or self.is_private),
            "is_group": self.is_private and not (self.is_im or self.is_mpim),
            "is_member": bot_user_id in self.members,
            "num_members": len(self.members),
            "is_ext_shared": self.is_ext_shared,
            "is_shared": self.is_ext_shared,
        }
        if self.name is not None:
            out["name"] = out["name_normalized"] = self.name
        if self.is_im:
            out["user"] = self.user
            out["is_user_deleted"] = False
        return out


@dataclass
class _File:
    id: str
    name: str
    content: bytes
    mimetype: str
    filetype: str
    user: str
    channels: list[str]
    created: int = field(default_factory=lambda: int(time.time()))


@dataclass
class _Bucket:
    """A token bucket: ``burst`` calls at once, refilled at ``per_s`` a second."""

    per_s: float
    burst: int
    retry_after_s: int
    tokens: float
    last: float

    def take(self, now: float) -> bool:
        elapsed = now - self.last
        if elapsed > 0:
            self.tokens = min(float(self.burst), self.tokens + elapsed * self.per_s)
        self.last = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


# --------------------------------------------------------------------------- #
# The server
# --------------------------------------------------------------------------- #


class FakeSlack(ThreadedServer):
    """Slack's Web API for one workspace with one bot, on a local port (thread-safe).

    Tests set the workspace up (``add_user``, ``add_channel``, ``add_file``), script
    trouble (``fail_next``, ``rate_limit``, ``expire_stream``) and read what the app did
    (``calls``, ``messages``, ``deleted``, ``ephemerals``, ``file_downloads``, ``responses``).
    ``reset()`` puts it back to a fresh workspace (the bot user only).
    """

    server_name: ClassVar[str] = "fake Slack"

    def __init__(
        self,
        *,
        bot_token: str = "xoxb-test",
        team_id: str = "T0KEEL",
        bot_user_id: str = "UBOT",
        bot_id: str = "BBOT",
        host: str = "127.0.0.1",
        port: int = 0,
        team_name: str = "Keel Test",
        team_domain: str = "keel-test",
        bot_name: str = "keel",
    ) -> None:
        super().__init__(host=host, port=port)
        self.bot_token = bot_token
        self.team_id = team_id
        self.bot_user_id = bot_user_id
        self.bot_id = bot_id
        self.team_name = team_name
        self.team_domain = team_domain
        self.bot_name = bot_name
        self._lock = threading.RLock()
        self._methods: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "api.test": self._api_test,
            "auth.test": self._auth_test,
            "users.info": self._users_info,
            "users.lookupByEmail": self._users_lookup_by_email,
            "conversations.info": self._conversations_info,
            "conversations.members": self._conversations_members,
            "conversations.open": self._conversations_open,
            "chat.postMessage": self._chat_post_message,
            "chat.postEphemeral": self._chat_post_ephemeral,
            "chat.update": self._chat_update,
            "chat.delete": self._chat_delete,
            "chat.startStream": self._chat_start_stream,
            "chat.appendStream": self._chat_append_stream,
            "chat.stopStream": self._chat_stop_stream,
            "assistant.threads.setStatus": self._assistant_set_status,
            "files.info": self._files_info,
        }
        self.reset()

    def reset(self) -> None:
        """Forget everything: workspace (but the bot user), records, scripted failures and limits."""
        with self._lock:
            self._users: dict[str, dict[str, Any]] = {}
            self._channels: dict[str, _Channel] = {}
            self._files: dict[str, _File] = {}
            self._messages: dict[str, list[Message]] = {}
            self._ephemerals: dict[str, list[Message]] = {}
            self._by_ts: dict[tuple[str, str], Message] = {}
            self._deleted: list[Message] = []
            self._calls: list[Call] = []
            self._downloads: list[FileDownload] = []
            self._responses: list[ResponsePost] = []
            self._statuses: list[AssistantStatus] = []
            self._failures: dict[str, list[str]] = {}
            self._limits: dict[str | None, tuple[float, int, int]] = {}
            self._buckets: dict[str, _Bucket] = {}
            self._last_ts_us = 0
            self.add_user(self.bot_user_id, name=self.bot_name, real_name=self.bot_name, is_bot=True)

    # -- lifecycle and addresses -------------------------------------------- #

    def _asgi_app(self) -> ASGIApp:
        return Starlette(
            routes=[
                Route("/api/{method}", self._api_endpoint, methods=["GET", "POST"]),
                Route("/files-pri/{team_file}/download/{name:path}", self._file_endpoint, methods=["GET"]),
                Route("/files-pri/{team_file}/{name:path}", self._file_endpoint, methods=["GET"]),
                Route("/response/{key}", self._response_endpoint, methods=["POST"]),
            ]
        )

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (the root)."""
        return f"http://{self._host}:{self.port}"

    @property
    def api_url(self) -> str:
        """``http://127.0.0.1:PORT/api/``: what ``AsyncWebClient(base_url=...)`` takes."""
        return f"{self.url}/api/"

    def response_url(self, key: str | None = None) -> str:
        """A ``response_url`` on this fake (for slash commands and interactivity payloads)."""
        return f"{self.url}/response/{key or uuid.uuid4().hex}"

    # -- workspace setup ---------------------------------------------------- #

    def add_user(
        self,
        user_id: str,
        *,
        email: str | None = None,
        name: str | None = None,
        real_name: str | None = None,
        is_bot: bool = False,
        deleted: bool = False,
        is_restricted: bool = False,
        is_ultra_restricted: bool = False,
        is_app_user: bool = False,
    ) -> None:
        """Add (or replace) a member; ``is_restricted``/``is_ultra_restricted`` are guests;
        ``is_app_user``: a person who authorized the calling app (still a human)."""
        name = name or user_id.lower()
        real_name = real_name or name
        profile: dict[str, Any] = {
            "real_name": real_name,
            "real_name_normalized": real_name,
            "display_name": name,
            "display_name_normalized": name,
            "team": self.team_id,
        }
        if email is not None:
            profile["email"] = email
        if is_bot and user_id == self.bot_user_id:
            profile["bot_id"] = self.bot_id
        user = {
            "id": user_id,
            "team_id": self.team_id,
            "name": name,
            "real_name": real_name,
            "deleted": deleted,
            "is_admin": False,
            "is_owner": False,
            "is_bot": is_bot,
            "is_restricted": is_restricted,
            "is_ultra_restricted": is_ultra_restricted,
            "is_app_user": is_app_user,
            "tz": "Europe/London",
            "updated": int(time.time()),
            "profile": profile,
        }
        with self._lock:
            self._users[user_id] = user

    def add_channel(
        self,
        channel_id: str,
        *,
        name: str | None = None,
        members: Sequence[str] | None = None,
        is_im: bool = False,
        is_private: bool = False,
        is_mpim: bool = False,
        user: str | None = None,
        is_ext_shared: bool = False,
    ) -> None:
        """Add (or replace) a conversation. An IM has ``user`` (the human) and, by default,
        members ``[user, bot]``; a channel's ``members`` must include the bot for it to post."""
        if is_im and user is None:
            raise ValueError("an IM channel needs the user it is with")
        if members is None:
            members = [user, self.bot_user_id] if is_im and user is not None else []
        with self._lock:
            self._channels[channel_id] = _Channel(
                channel_id,
                name,
                list(members),
                is_im,
                is_private,
                is_mpim,
                user if is_im else None,
                is_ext_shared=is_ext_shared,
            )

    def set_members(self, channel_id: str, members: Iterable[str]) -> None:
        """Replace a channel's members (a person joins or leaves, the bot is removed, ...)."""
        with self._lock:
            self._channels[channel_id].members = list(members)

    def add_file(
        self,
        file_id: str,
        *,
        name: str,
        content: bytes,
        mimetype: str,
        filetype: str,
        user: str,
        channels: Sequence[str] = (),
    ) -> dict[str, Any]:
        """Add an uploaded file; returns its Slack file object (``url_private*`` point at
        this fake, so the fake must be started)."""
        f = _File(file_id, name, content, mimetype, filetype, user, list(channels))
        with self._lock:
            self._files[file_id] = f
            return self._file_object(f)

    # -- scripting trouble -------------------------------------------------- #

    def rate_limit(
        self, channel_id: str | None, *, per_s: float, burst: int = 1, retry_after_s: int = 1
    ) -> None:
        """Limit the posting methods on ``channel_id`` (``None``: on each channel, each with its
        own bucket) to ``burst`` calls at once refilled at ``per_s`` a second; calls past it
        get HTTP 429, ``Retry-After: retry_after_s``, ``{"ok": false, "error": "ratelimited"}``.
        ``per_s=float("inf")`` lifts a limit."""
        with self._lock:
            self._limits[channel_id] = (per_s, burst, retry_after_s)
            for ch in list(self._buckets):
                if ch == channel_id or (channel_id is None and ch not in self._limits):
                    del self._buckets[ch]

    def fail_next(self, method: str, error: str, *, times: int = 1) -> None:
        """The next ``times`` calls of ``method`` answer ``{"ok": false, "error": error}``
        (``"ratelimited"`` comes as HTTP 429 with ``Retry-After: 1``; ``"http_503"`` (any
        ``http_5xx``) as that HTTP status with ``error: service_unavailable``: an outage)."""
        with self._lock:
            self._failures.setdefault(method, []).extend([error] * times)

    def expire_stream(self, ts: str) -> None:
        """End the stream at ``ts`` server-side, as Slack does after its ~5 minute window:
        later append/stop calls get ``message_not_in_streaming_state`` (``chat.update``
        still works). ``KeyError`` if no stream was started at ``ts``."""
        with self._lock:
            for msg in self._by_ts.values():
                if msg.ts == ts and msg.stream:
                    msg.streaming, msg.expired = False, True
                    return
        raise KeyError(f"no stream at ts {ts}")

    # -- what tests read ---------------------------------------------------- #

    @property
    def calls(self) -> list[Call]:
        """Every API call so far, in order (rate-limited and failed ones too)."""
        with self._lock:
            return list(self._calls)

    def calls_to(self, method: str) -> list[Call]:
        with self._lock:
            return [c for c in self._calls if c.method == method]

    def messages(self, channel_id: str, *, thread_ts: str | None = None) -> list[Message]:
        """Messages (not ephemeral) in the channel as they stand now, oldest first; with
        ``thread_ts``, only the replies in that thread."""
        with self._lock:
            found = [m for m in self._messages.get(channel_id, []) if thread_ts in (None, m.thread_ts)]
            return copy.deepcopy(found)

    def deleted(self, channel_id: str) -> list[Message]:
        """Messages removed with ``chat.delete``, as they were then, in the order deleted."""
        with self._lock:
            return copy.deepcopy([m for m in self._deleted if m.channel == channel_id])

    def ephemerals(self, channel_id: str, user: str | None = None) -> list[Message]:
        """Ephemeral messages posted in the channel (only to ``user``, if given)."""
        with self._lock:
            found = [m for m in self._ephemerals.get(channel_id, []) if user in (None, m.recipient)]
            return copy.deepcopy(found)

    def assistant_status(self, channel_id: str, thread_ts: str) -> str | None:
        """The thread's current assistant status (``""`` once cleared; ``None``: never set)."""
        with self._lock:
            found = [s for s in self._statuses if (s.channel_id, s.thread_ts) == (channel_id, thread_ts)]
            return found[-1].status if found else None

    @property
    def assistant_statuses(self) -> list[AssistantStatus]:
        with self._lock:
            return list(self._statuses)

    @property
    def file_downloads(self) -> list[FileDownload]:
        with self._lock:
            return list(self._downloads)

    @property
    def responses(self) -> list[ResponsePost]:
        """What apps POSTed to ``response_url``s on this fake, in order."""
        with self._lock:
            return list(self._responses)

    def summary(self, last: int = 40) -> str:
        """The last calls, one line each: method, channel, answer."""
        with self._lock:
            calls, start = self._calls[-last:], (self._calls[0].at if self._calls else 0.0)
        lines = []
        for c in calls:
            where = c.params.get("channel") or c.params.get("channel_id") or ""
            answer = "ok" if c.ok else f"{c.http_status} {c.error}"
            lines.append(f"  +{c.at - start:7.3f}s {c.method} {where} -> {answer}")
        return "\n".join(lines) or "  (no calls)"

    def wait_for(self, predicate: Callable[[FakeSlack], bool], timeout_s: float = 20.0) -> None:
        """Poll ``predicate(fake)`` until true (a ``LookupError`` counts as false); on timeout
        raise ``AssertionError`` with the calls seen. Blocks the thread: from a test whose
        app runs on the same event loop, use ``wait_for_async``."""
        deadline = time.monotonic() + timeout_s
        while not self._holds(predicate):
            if time.monotonic() > deadline:
                raise AssertionError(f"Slack condition not met in {timeout_s}s; calls:\n{self.summary()}")
            time.sleep(0.02)

    async def wait_for_async(self, predicate: Callable[[FakeSlack], bool], timeout_s: float = 20.0) -> None:
        """``wait_for`` that yields to the event loop between polls."""
        deadline = time.monotonic() + timeout_s
        while not self._holds(predicate):
            if time.monotonic() > deadline:
                raise AssertionError(f"Slack condition not met in {timeout_s}s; calls:\n{self.summary()}")
            await asyncio.sleep(0.02)

    def _holds(self, predicate: Callable[[FakeSlack], bool]) -> bool:
        try:
            return bool(predicate(self))
        except LookupError:
            return False

    # -- HTTP endpoints ----------------------------------------------------- #

    async def _api_endpoint(self, request: Request) -> Response:
        headers = {k.lower(): v for k, v in request.headers.items()}
        method = request.path_params["method"]
        try:
            params = await _read_params(request)
        except _SlackError as exc:
            call = Call(method, {}, headers, time.monotonic(), 200, exc.body())
        else:
            with self._lock:
                call = self._dispatch(method, params, headers)
        with self._lock:
            self._calls.append(call)
        retry = {"Retry-After": str(call.retry_after_s)} if call.retry_after_s is not None else None
        return JSONResponse(call.response, status_code=call.http_status, headers=retry)

    def _dispatch(self, method: str, params: dict[str, Any], headers: dict[str, str]) -> Call:
        def done(body: dict[str, Any], retry_after_s: int | None = None) -> Call:
            status = 200 if retry_after_s is None else 429
            limited = retry_after_s is not None
            return Call(method, params, headers, time.monotonic(), status, body, limited, retry_after_s)

        handler = self._methods.get(method)
        if handler is None:
            return done({"ok": False, "error": "unknown_method"})
        if method != "api.test":
            auth = headers.get("authorization", "")
            token = auth[len("Bearer ") :] if auth.startswith("Bearer ") else _str(params, "token")
            if token is None:
                return done({"ok": False, "error": "not_authed"})
            if token != self.bot_token:
                return done({"ok": False, "error": "invalid_auth"})
        retry_after = self._take_token(method, _str(params, "channel"))
        if retry_after is not None:
            return done({"ok": False, "error": "ratelimited"}, retry_after)
        failures = self._failures.get(method)
        if failures:
            error = failures.pop(0)
            if error == "ratelimited":
                return done({"ok": False, "error": error}, 1)
            if error.startswith("http_"):  # an outage: Slack answers 5xx
                status = int(error.removeprefix("http_"))
                return Call(
                    method,
                    params,
                    headers,
                    time.monotonic(),
                    status,
                    {"ok": False, "error": "service_unavailable"},
                    False,
                    None,
                )
            return done({"ok": False, "error": error})
        try:
            return done({"ok": True, **handler(params)})
        except _SlackError as exc:
            return done(exc.body())

    def _take_token(self, method: str, channel: str | None) -> int | None:
        """``None`` if the call may go ahead, else the ``Retry-After`` seconds."""
        if method not in POSTING_METHODS or channel is None:
            return None
        limit = self._limits.get(channel) or self._limits.get(None)
        if limit is None:
            return None
        now = time.monotonic()
        bucket = self._buckets.get(channel)
        if bucket is None:
            bucket = self._buckets[channel] = _Bucket(limit[0], limit[1], limit[2], float(limit[1]), now)
        return None if bucket.take(now) else bucket.retry_after_s

    async def _file_endpoint(self, request: Request) -> Response:
        """A private file URL: the bytes with the bot token, Slack's login page without."""
        team_file = request.path_params["team_file"]
        file_id = team_file.removeprefix(f"{self.team_id}-")
        auth = request.headers.get("authorization")
        with self._lock:
            f = self._files.get(file_id)
            served = f is not None and auth == f"Bearer {self.bot_token}"
            self._downloads.append(FileDownload(file_id, request.url.path, auth, served, time.monotonic()))
        if not served:
            return HTMLResponse(LOGIN_PAGE)
        assert f is not None
        disposition = "attachment" if "/download/" in request.url.path else "inline"
        return Response(
            f.content,
            media_type=f.mimetype,
            headers={"Content-Disposition": f'{disposition}; filename="{f.name}"'},
        )

    async def _response_endpoint(self, request: Request) -> Response:
        raw = await request.body()
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = None
        headers = {k.lower(): v for k, v in request.headers.items()}
        post = ResponsePost(request.path_params["key"], body, raw, headers, time.monotonic())
        with self._lock:
            self._responses.append(post)
        return JSONResponse({"ok": True})

    # -- state helpers (called under the lock) ------------------------------ #

    def _next_ts(self) -> str:
        """A unique, increasing ``ts`` in Slack's format (epoch seconds, 6 decimals)."""
        self._last_ts_us = max(time.time_ns() // 1_000, self._last_ts_us + 1)
        return f"{self._last_ts_us // 1_000_000}.{self._last_ts_us % 1_000_000:06d}"

    def _channel(self, params: dict[str, Any], name: str = "channel") -> _Channel:
        channel = self._channels.get(_str(params, name) or "")
        if channel is None or (channel.is_private and self.bot_user_id not in channel.members):
            raise _SlackError("channel_not_found")
        return channel

    def _postable(self, params: dict[str, Any]) -> _Channel:
        channel = self._channel(params)
        if self.bot_user_id not in channel.members:
            raise _SlackError("not_in_channel")
        return channel

    def _user(self, user_id: str | None) -> dict[str, Any]:
        user = self._users.get(user_id or "")
        if user is None:
            raise _SlackError("user_not_found")
        return user

    def _stored(self, params: dict[str, Any]) -> Message:
        channel = self._channel(params)
        msg = self._by_ts.get((channel.id, _str(params, "ts") or ""))
        if msg is None:
            raise _SlackError("message_not_found")
        return msg

    def _store(self, msg: Message) -> Message:
        bucket = self._ephemerals if msg.ephemeral else self._messages
        bucket.setdefault(msg.channel, []).append(msg)
        if not msg.ephemeral:
            self._by_ts[(msg.channel, msg.ts)] = msg
        return msg

    def _file_object(self, f: _File) -> dict[str, Any]:
        base = f"{self.url}/files-pri/{self.team_id}-{f.id}"
        return {
            "id": f.id,
            "created": f.created,
            "timestamp": f.created,
            "name": f.name,
            "title": f.name,
            "mimetype": f.mimetype,
            "filetype": f.filetype,
            "pretty_type": f.filetype.upper(),
            "user": f.user,
            "user_team": self.team_id,
            "editable": False,
            "size": len(f.content),
            "mode": "hosted",
            "is_external": False,
            "external_type": "",
            "is_public": False,
            "public_url_shared": False,
            "display_as_bot": False,
            "url_private": f"{base}/{quote(f.name)}",
            "url_private_download": f"{base}/download/{quote(f.name)}",
            "permalink": f"https://{self.team_domain}.slack.com/files/{f.user}/{f.id}/{quote(f.name)}",
            "channels": [c for c in f.channels if not self._is_im(c)],
            "groups": [],
            "ims": [c for c in f.channels if self._is_im(c)],
            "file_access": "visible",
        }

    def _is_im(self, channel_id: str) -> bool:
        channel = self._channels.get(channel_id)
        return channel is not None and channel.is_im

    # -- API methods (called under the lock; raise _SlackError for ok:false) - #

    def _api_test(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"args": {k: v for k, v in params.items() if k != "token"}}

    def _auth_test(self, params: dict[str, Any]) -> dict[str, Any]:
        return {
            "url": f"https://{self.team_domain}.slack.com/",
            "team": self.team_name,
            "user": self.bot_name,
            "team_id": self.team_id,
            "user_id": self.bot_user_id,
            "bot_id": self.bot_id,
            "is_enterprise_install": False,
        }

    def _users_info(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"user": copy.deepcopy(self._user(_str(params, "user")))}

    def _users_lookup_by_email(self, params: dict[str, Any]) -> dict[str, Any]:
        email = (_str(params, "email") or "").lower()
        for user in self._users.values():
            if email and str(user["profile"].get("email", "")).lower() == email:
                return {"user": copy.deepcopy(user)}
        raise _SlackError("users_not_found")

    def _conversations_info(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"channel": self._channel(params).as_slack(self.bot_user_id)}

    def _conversations_open(self, params: dict[str, Any]) -> dict[str, Any]:
        """The bot's DM with ``users`` (one user id): the existing IM, or a new one ``D<user>``."""
        user = _str(params, "users") or ""
        if "," in user:
            raise _SlackError("not_implemented")  # group DMs (mpim) are not faked
        if user not in self._users:
            raise _SlackError("user_not_found")
        for channel in self._channels.values():
            if channel.is_im and channel.user == user:
                return {"channel": {"id": channel.id}}
        channel_id = f"D{user}"
        self._channels[channel_id] = _Channel(
            channel_id, None, [user, self.bot_user_id], True, False, False, user
        )
        return {"channel": {"id": channel_id}}

    def _conversations_members(self, params: dict[str, Any]) -> dict[str, Any]:
        """Paginated like Slack: an opaque ``next_cursor`` (``""`` on the last page)."""
        members = self._channel(params).members
        try:
            limit = max(1, min(1000, int(params.get("limit") or 100)))
        except ValueError:
            raise _SlackError("invalid_limit") from None
        start = 0
        cursor = _str(params, "cursor")
        if cursor is not None:
            try:
                start = members.index(base64.b64decode(cursor).decode().removeprefix("user:"))
            except ValueError:
                raise _SlackError("invalid_cursor") from None
        page = members[start : start + limit]
        rest = members[start + limit : start + limit + 1]
        next_cursor = base64.b64encode(f"user:{rest[0]}".encode()).decode() if rest else ""
        return {"members": page, "response_metadata": {"next_cursor": next_cursor}}

    def _chat_post_message(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._postable(params)
        text, blocks, attachments = _content(params)
        metadata = _json_param(params, "metadata", "invalid_metadata_format")
        msg = self._store(
            Message(
                channel=channel.id,
                ts=self._next_ts(),
                text=text or "",
                user=self.bot_user_id,
                bot_id=self.bot_id,
                blocks=blocks,
                attachments=attachments,
                thread_ts=_str(params, "thread_ts"),
                unfurl_links=_bool(params.get("unfurl_links")),
                unfurl_media=_bool(params.get("unfurl_media")),
                mrkdwn=_bool(params.get("mrkdwn")),
                metadata=metadata,
            )
        )
        return {"channel": channel.id, "ts": msg.ts, "message": msg.as_slack(self.team_id)}

    def _chat_post_ephemeral(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._postable(params)
        recipient = _str(params, "user")
        self._user(recipient)
        if recipient not in channel.members:
            raise _SlackError("user_not_in_channel")
        text, blocks, attachments = _content(params)
        msg = self._store(
            Message(
                channel=channel.id,
                ts=self._next_ts(),
                text=text or "",
                user=self.bot_user_id,
                bot_id=self.bot_id,
                blocks=blocks,
                attachments=attachments,
                thread_ts=_str(params, "thread_ts"),
                ephemeral=True,
                recipient=recipient,
            )
        )
        return {"message_ts": msg.ts}

    def _chat_update(self, params: dict[str, Any]) -> dict[str, Any]:
        msg = self._stored(params)
        if msg.user != self.bot_user_id:
            raise _SlackError("cant_update_message")
        text, blocks, attachments = _content(params)
        msg.edits.append(Edit(msg.text, copy.deepcopy(msg.blocks), time.monotonic()))
        if text is not None:
            msg.text = text
        if "blocks" in params:
            msg.blocks = blocks
        if "attachments" in params:
            msg.attachments = attachments
        if "metadata" in params:
            msg.metadata = _json_param(params, "metadata", "invalid_metadata_format")
        return {"channel": msg.channel, "ts": msg.ts, "text": msg.text, "message": msg.as_slack(self.team_id)}

    def _chat_delete(self, params: dict[str, Any]) -> dict[str, Any]:
        """A bot deletes its own messages only (``cant_delete_message`` otherwise)."""
        msg = self._stored(params)
        if msg.user != self.bot_user_id:
            raise _SlackError("cant_delete_message")
        self._messages[msg.channel].remove(msg)
        del self._by_ts[(msg.channel, msg.ts)]
        msg.streaming = False
        self._deleted.append(msg)
        return {"channel": msg.channel, "ts": msg.ts}

    def _chat_start_stream(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._postable(params)
        thread_ts = _str(params, "thread_ts")
        if thread_ts is None:
            raise _SlackError("invalid_arguments", "missing required field: thread_ts")
        recipient_user, recipient_team = _str(params, "recipient_user_id"), _str(params, "recipient_team_id")
        if not channel.is_im:
            for name, value in (("recipient_user_id", recipient_user), ("recipient_team_id", recipient_team)):
                if value is None:
                    raise _SlackError("invalid_arguments", f"missing required field: {name}")
        text, chunks = _stream_text(params, required=False)
        msg = self._store(
            Message(
                channel=channel.id,
                ts=self._next_ts(),
                text=text,
                user=self.bot_user_id,
                bot_id=self.bot_id,
                thread_ts=thread_ts,
                stream=True,
                streaming=True,
                recipient_user_id=recipient_user,
                recipient_team_id=recipient_team,
                chunks=chunks,
            )
        )
        return {"channel": channel.id, "ts": msg.ts}

    def _streaming(self, params: dict[str, Any]) -> Message:
        msg = self._stored(params)
        if not msg.streaming:
            raise _SlackError("message_not_in_streaming_state")
        return msg

    def _chat_append_stream(self, params: dict[str, Any]) -> dict[str, Any]:
        msg = self._streaming(params)
        text, chunks = _stream_text(params, required=True)
        msg.text += text
        msg.chunks.extend(chunks)
        return {"channel": msg.channel, "ts": msg.ts}

    def _chat_stop_stream(self, params: dict[str, Any]) -> dict[str, Any]:
        msg = self._streaming(params)
        text, chunks = _stream_text(params, required=False)
        blocks = _blocks(params)
        metadata = _json_param(params, "metadata", "invalid_metadata_format")
        msg.text += text
        msg.chunks.extend(chunks)
        if blocks is not None:
            msg.blocks = blocks
        if metadata is not None:
            msg.metadata = metadata
        msg.session_status = _str(params, "session_status")
        msg.streaming = False
        return {"channel": msg.channel, "ts": msg.ts, "message": msg.as_slack(self.team_id)}

    def _assistant_set_status(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(params, "channel_id")
        thread_ts = _str(params, "thread_ts")
        if thread_ts is None:
            raise _SlackError("invalid_arguments", "missing required field: thread_ts")
        if "status" not in params:
            raise _SlackError("invalid_arguments", "missing required field: status")
        loading = _json_param(params, "loading_messages", "invalid_arguments")
        if loading is not None and (not isinstance(loading, list) or len(loading) > MAX_LOADING_MESSAGES):
            raise _SlackError(
                "invalid_arguments", _TOO_MANY.format(MAX_LOADING_MESSAGES, "/loading_messages")
            )
        status = str(params.get("status") or "")
        self._statuses.append(AssistantStatus(channel.id, thread_ts, status, loading, time.monotonic()))
        return {}

    def _files_info(self, params: dict[str, Any]) -> dict[str, Any]:
        f = self._files.get(_str(params, "file") or "")
        if f is None:
            raise _SlackError("file_not_found")
        return {"file": self._file_object(f)}
