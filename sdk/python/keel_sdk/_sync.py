"""``KeelClient``: the synchronous client (``_async.py`` mirrors it line for line)."""

from __future__ import annotations

import builtins
import contextlib
import time
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import httpx

from keel_sdk import _calls as c
from keel_sdk import _models as m
from keel_sdk._base import (
    DEFAULT_MAX_RETRIES,
    DEFAULT_TIMEOUT,
    Call,
    ProgressCallback,
    ProgressFile,
    RetryPolicy,
    connection_error,
    content_type_for,
    default_headers,
    events_call,
    no_content,
    resolve_config,
)
from keel_sdk._stream import StreamState
from keel_sdk.errors import APIConnectionError, KeelError, error_from_response
from keel_sdk.events import StreamEvent, parse_event
from keel_sdk.sse import SSEDecoder

T = TypeVar("T")


class KeelClient:
    """A client of Keel's REST API.

    ``api_key`` (``keel_…``) or ``token`` (an EntraID or dev token) is sent as
    ``Authorization: Bearer …``; without either, ``KEEL_API_KEY`` / ``KEEL_TOKEN``.
    ``base_url`` defaults to ``KEEL_URL``, else ``http://127.0.0.1:8000``.
    """

    def __init__(
        self,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        token: str | None = None,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        headers: Mapping[str, str] | None = None,
        http_client: httpx.Client | None = None,
    ) -> None:
        self.base_url, credential = resolve_config(base_url, api_key, token)
        self.retry = RetryPolicy(max_retries=max_retries)
        self._http = http_client or httpx.Client(base_url=self.base_url, timeout=timeout)
        self._http.headers.update(default_headers(credential, headers))
        self.auth = Auth(self)
        self.sessions = Sessions(self)
        self.turns = Turns(self)
        self.kb = KnowledgeBases(self)
        self.tools = Tools(self)
        self.agents = Agents(self)
        self.approvals = Approvals(self)
        self.api_keys = ApiKeys(self)
        self.usage = Usage(self)
        self.admin = Admin(self)

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> KeelClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # ------------------------------------------------------------------ transport
    def send(self, call: Call[T]) -> T:
        """Send one call (with the retry policy) and read its answer."""
        response = self._send(call, stream=False)
        return call.parse(response)

    def _send(self, call: Call[Any], *, stream: bool) -> httpx.Response:
        attempt = 0
        while True:
            try:
                response = self._http.send(call.build(self._http), stream=stream)
            except httpx.TransportError as exc:
                wait = self.retry.after_error(attempt, call, exc)
                if wait is None:
                    raise connection_error(exc) from exc
            else:
                if not response.is_error:
                    return response
                if stream:
                    response.read()
                    response.close()
                wait = self.retry.after_response(attempt, call, response)
                if wait is None:
                    raise error_from_response(response)
            time.sleep(wait)
            attempt += 1

    # ------------------------------------------------------------------ chat
    def chat(self, message: str, session_id: str | None = None, **extra: Any) -> m.ChatResponse:
        """Send a message and wait for the finished turn (``POST /api/v1/chat``). ``extra``:
        other ``ChatRequest`` fields (``knowledge_base_ids``, ``agent``)."""
        return self.send(c.chat(message, session_id, extra))

    def chat_stream(self, message: str, session_id: str | None = None, **extra: Any) -> ChatStream:
        """Send a message and iterate over the turn's events (``POST /api/v1/chat/stream``);
        a dropped connection is resumed after the last event id."""
        body = c.chat_body(message, session_id, extra)
        return ChatStream(self, Call("POST", "/api/v1/chat/stream", no_content, json=body))


class ChatStream:
    """The events of one turn. Iterate it (once); ``session_id``, ``turn_id``,
    ``last_event_id`` and ``response`` (the finished :class:`ChatResponse`) fill in as
    events arrive. If the connection breaks before the turn's last event, the stream
    reconnects with ``Last-Event-ID`` (``GET …/turns/{turn_id}/events``), up to
    ``max_retries`` times in a row, so no text is lost or repeated."""

    def __init__(self, client: KeelClient, call: Call[None], state: StreamState | None = None) -> None:
        self._client = client
        self._call = call
        self.state = state or StreamState()
        self._response: httpx.Response | None = None

    @property
    def session_id(self) -> str | None:
        return self.state.session_id

    @property
    def turn_id(self) -> str | None:
        return self.state.turn_id

    @property
    def last_event_id(self) -> str | None:
        return self.state.last_event_id

    @property
    def response(self) -> m.ChatResponse | None:
        return self.state.response

    def __iter__(self) -> Iterator[StreamEvent]:
        call, failures = self._call, 0
        while True:
            cause: BaseException | None = None
            try:
                for event in self._events(call):
                    failures = 0
                    yield event
            except httpx.TransportError as exc:
                cause = exc
            finally:
                self.close()
            if self.state.ended:
                return
            session_id, turn_id = self.state.resume_target(cause)
            if failures >= self._client.retry.max_retries:
                raise APIConnectionError("the stream broke and could not be resumed") from cause
            time.sleep(self._client.retry.backoff(failures))
            failures += 1
            call = events_call(session_id, turn_id, self.state.last_event_id)

    def _events(self, call: Call[None]) -> Iterator[StreamEvent]:
        self._response = self._client._send(call, stream=True)
        self.state.take_headers(self._response)
        decoder = SSEDecoder()
        for chunk in self._response.iter_bytes():
            for sse in decoder.feed(chunk):
                event = parse_event(sse)
                self.state.see(event)
                yield event
                if self.state.finished:
                    return
        decoder.close()

    def until_done(self) -> m.ChatResponse | None:
        """Read to the end; the finished turn (None if it failed, was cancelled or waits)."""
        for _ in self:
            pass
        return self.state.response

    def text(self) -> str:
        """Read to the end and return the answer's text, honouring ``message.reset``."""
        done = self.until_done()
        return done.message.content if done is not None else ""

    def close(self) -> None:
        if self._response is not None:
            with contextlib.suppress(httpx.HTTPError):
                self._response.close()
            self._response = None

    def __enter__(self) -> ChatStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Resource:
    def __init__(self, client: KeelClient) -> None:
        self._client = client


class Auth(_Resource):
    def me(self) -> m.MeResponse:
        return self._client.send(c.get_me())

    def dev_token(self, user_id: str, **claims: Any) -> m.TokenResponse:
        """A dev token (``KEEL_AUTH_MODE=dev`` only): ``groups``, ``roles``, ``email``…"""
        return self._client.send(c.create_dev_token(user_id, claims))


class Sessions(_Resource):
    def list(self, *, limit: int | None = None, before: datetime | str | None = None) -> m.SessionList:
        return self._client.send(c.list_sessions(limit, before))

    def get(self, session_id: str) -> m.SessionDetail:
        return self._client.send(c.get_session(session_id))

    def rename(self, session_id: str, title: str) -> m.SessionSummary:
        return self._client.send(c.rename_session(session_id, title))

    def delete(self, session_id: str) -> None:
        self._client.send(c.delete_session(session_id))


class Turns(_Resource):
    def cancel(self, session_id: str, turn_id: str) -> m.CancelAccepted:
        return self._client.send(c.cancel_turn(session_id, turn_id))

    def events(self, session_id: str, turn_id: str, *, last_event_id: str | None = None) -> ChatStream:
        """A turn's events after ``last_event_id`` (all without it), then live."""
        state = StreamState(session_id=session_id, turn_id=turn_id, last_event_id=last_event_id)
        return ChatStream(self._client, events_call(session_id, turn_id, last_event_id), state)


class Documents(_Resource):
    def list(self, kb_id: str) -> m.DocumentList:
        return self._client.send(c.list_documents(kb_id))

    def get(self, kb_id: str, doc_id: str) -> m.DocumentView:
        return self._client.send(c.get_document(kb_id, doc_id))

    def delete(self, kb_id: str, doc_id: str) -> None:
        self._client.send(c.delete_document(kb_id, doc_id))

    def share(
        self, kb_id: str, doc_id: str, *, user_ids: Sequence[str] = (), group_ids: Sequence[str] = ()
    ) -> m.ShareResponse:
        return self._client.send(c.share_document(kb_id, doc_id, user_ids, group_ids, share=True))

    def unshare(
        self, kb_id: str, doc_id: str, *, user_ids: Sequence[str] = (), group_ids: Sequence[str] = ()
    ) -> m.ShareResponse:
        return self._client.send(c.share_document(kb_id, doc_id, user_ids, group_ids, share=False))

    def wait(
        self, kb_id: str, doc_id: str, *, timeout_s: float = 300, interval_s: float = 0.5
    ) -> m.DocumentView:
        """Poll until the document is ``ready`` or ``failed`` (``KeelError`` ``timeout`` after that)."""
        deadline = time.monotonic() + timeout_s
        while True:
            doc = self.get(kb_id, doc_id)
            if doc.status != "processing":
                return doc
            if time.monotonic() > deadline:
                raise KeelError(f"document {doc_id} still processing after {timeout_s} s", code="timeout")
            time.sleep(interval_s)


class KnowledgeBases(_Resource):
    def __init__(self, client: KeelClient) -> None:
        super().__init__(client)
        self.documents = Documents(client)

    def list(self) -> m.KnowledgeBaseList:
        return self._client.send(c.list_knowledge_bases())

    def personal_id(self) -> str:
        """The id of my personal knowledge base."""
        for kb in self.list().knowledge_bases:
            if kb.personal:
                return kb.id
        raise KeelError("no personal knowledge base is listed for you", code="knowledge_base_not_found")

    def upload(
        self, kb_id: str, path: str | Path, *, on_progress: ProgressCallback | None = None
    ) -> m.DocumentAccepted:
        """Upload one file (202: indexed by a workflow; see ``documents.wait``).
        ``on_progress(UploadProgress)`` is called as the body is sent."""
        path = Path(path)
        with path.open("rb") as handle:
            part = (path.name, ProgressFile(handle, path.name, on_progress), content_type_for(path.name))
            return self._client.send(c.upload_document(kb_id, {"file": part}))

    def ingest(
        self, kb_id: str, paths: Sequence[str | Path], *, on_progress: ProgressCallback | None = None
    ) -> m.BatchAccepted:
        """Upload many files as one batch (``POST …/ingestions``); follow it with ``ingestion``."""
        with contextlib.ExitStack() as stack:
            parts: list[tuple[str, Any]] = []
            for raw in paths:
                path = Path(raw)
                handle = stack.enter_context(path.open("rb"))
                wrapped = ProgressFile(handle, path.name, on_progress)
                parts.append(("files", (path.name, wrapped, content_type_for(path.name))))
            return self._client.send(c.start_ingestion(kb_id, parts))

    def ingestion(self, batch_id: str) -> m.BatchStatus:
        return self._client.send(c.get_ingestion(batch_id))

    def query(self, kb_id: str, text: str, top_k: int | None = None) -> m.QueryResponse:
        return self._client.send(c.query_knowledge_base(kb_id, text, top_k))


class Tools(_Resource):
    def list(self) -> m.ToolList:
        return self._client.send(c.list_tools())


class Agents(_Resource):
    def list(self) -> m.AgentList:
        return self._client.send(c.list_agents())


class Approvals(_Resource):
    def list(self) -> m.ApprovalList:
        return self._client.send(c.list_approvals())

    def approve(self, approval_id: str, comment: str | None = None) -> m.ApprovalOut:
        return self._client.send(c.decide_approval(approval_id, "approve", comment))

    def deny(self, approval_id: str, reason: str | None = None) -> m.ApprovalOut:
        return self._client.send(c.decide_approval(approval_id, "deny", reason))


class ApiKeys(_Resource):
    def create(
        self, name: str, scopes: Sequence[str], *, expires_at: datetime | str | None = None
    ) -> m.ApiKeyCreated:
        return self._client.send(c.create_api_key(name, scopes, expires_at))

    def list(self) -> m.ApiKeyList:
        return self._client.send(c.list_api_keys())

    def rotate(self, key_id: str) -> m.ApiKeyCreated:
        return self._client.send(c.rotate_api_key(key_id))

    def revoke(self, key_id: str) -> None:
        self._client.send(c.revoke_api_key(key_id))


class Usage(_Resource):
    def get(self) -> m.UsageView:
        return self._client.send(c.get_my_usage())


class AdminTools(_Resource):
    def list(self) -> m.ToolServerList:
        return self._client.send(c.list_tool_servers())

    def add(self, **fields: Any) -> m.ToolServerView:
        """Allowlist an MCP server (``ToolServerRequest`` fields: ``name``, ``transport``, ``url``…)."""
        return self._client.send(c.add_tool_server(fields))

    def update(self, server_id: str, **fields: Any) -> m.ToolServerView:
        """Change an entry (``ToolServerPatch`` fields: ``enabled``, ``requires_approval``…)."""
        return self._client.send(c.update_tool_server(server_id, fields))

    def remove(self, server_id: str) -> None:
        self._client.send(c.remove_tool_server(server_id))


class AdminFailedOperations(_Resource):
    def list(self, status: str | None = None) -> m.FailedOperationList:
        return self._client.send(c.list_failed_operations(status))

    def retry(self, op_id: str) -> m.FailedOperationView:
        return self._client.send(c.retry_failed_operation(op_id))


class AdminBudgets(_Resource):
    def get(self, user_id: str) -> m.BudgetView:
        return self._client.send(c.get_user_budget(user_id))

    def set(
        self, user_id: str, *, daily_tokens: int | None = None, monthly_tokens: int | None = None
    ) -> m.BudgetView:
        """Set a user's override (None = unlimited)."""
        return self._client.send(c.set_user_budget(user_id, daily_tokens, monthly_tokens))

    def clear(self, user_id: str) -> None:
        self._client.send(c.clear_user_budget(user_id))


class AdminAudit(_Resource):
    def list(self, **filters: Any) -> m.AuditEventList:
        """Filters: ``user_id``, ``event``, ``since``, ``until``, ``limit``, ``before_seq``."""
        return self._client.send(c.list_audit_events(filters))

    def export(self, **filters: Any) -> builtins.list[dict[str, Any]]:
        return self._client.send(c.export_audit_events(filters))

    def verify(self) -> m.AuditChainView:
        return self._client.send(c.verify_audit_chain())


class AdminKnowledgeBases(_Resource):
    def create(self, name: str, description: str | None = None) -> m.KnowledgeBaseView:
        return self._client.send(c.create_org_knowledge_base(name, description))


class AdminUsage(_Resource):
    def get(
        self,
        *,
        user_id: str | None = None,
        first_day: datetime | str | None = None,
        last_day: datetime | str | None = None,
    ) -> m.AdminUsageView:
        return self._client.send(c.admin_usage(user_id, first_day, last_day))


class Admin(_Resource):
    def __init__(self, client: KeelClient) -> None:
        super().__init__(client)
        self.tools = AdminTools(client)
        self.failed_operations = AdminFailedOperations(client)
        self.budgets = AdminBudgets(client)
        self.audit = AdminAudit(client)
        self.knowledge_bases = AdminKnowledgeBases(client)
        self.usage = AdminUsage(client)
