"""``AsyncKeelClient``: the asyncio client, a line-for-line mirror of ``_sync.py``."""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import time
from collections.abc import AsyncIterator, Mapping, Sequence
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


class AsyncKeelClient:
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
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        self.base_url, credential = resolve_config(base_url, api_key, token)
        self.retry = RetryPolicy(max_retries=max_retries)
        self._http = http_client or httpx.AsyncClient(base_url=self.base_url, timeout=timeout)
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
    async def close(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncKeelClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # ------------------------------------------------------------------ transport
    async def send(self, call: Call[T]) -> T:
        """Send one call (with the retry policy) and read its answer."""
        response = await self._send(call, stream=False)
        return call.parse(response)

    async def _send(self, call: Call[Any], *, stream: bool) -> httpx.Response:
        attempt = 0
        while True:
            try:
                response = await self._http.send(call.build(self._http), stream=stream)
            except httpx.TransportError as exc:
                wait = self.retry.after_error(attempt, call, exc)
                if wait is None:
                    raise connection_error(exc) from exc
            else:
                if not response.is_error:
                    return response
                if stream:
                    await response.aread()
                    await response.aclose()
                wait = self.retry.after_response(attempt, call, response)
                if wait is None:
                    raise error_from_response(response)
            await asyncio.sleep(wait)
            attempt += 1

    # ------------------------------------------------------------------ chat
    async def chat(self, message: str, session_id: str | None = None, **extra: Any) -> m.ChatResponse:
        """Send a message and wait for the finished turn (``POST /api/v1/chat``). ``extra``:
        other ``ChatRequest`` fields (``knowledge_base_ids``, ``agent``)."""
        return await self.send(c.chat(message, session_id, extra))

    def chat_stream(self, message: str, session_id: str | None = None, **extra: Any) -> AsyncChatStream:
        """Send a message and iterate over the turn's events (``POST /api/v1/chat/stream``);
        a dropped connection is resumed after the last event id."""
        body = c.chat_body(message, session_id, extra)
        return AsyncChatStream(self, Call("POST", "/api/v1/chat/stream", no_content, json=body))


class AsyncChatStream:
    """The events of one turn. Iterate it (once); ``session_id``, ``turn_id``,
    ``last_event_id`` and ``response`` (the finished :class:`ChatResponse`) fill in as
    events arrive. If the connection breaks before the turn's last event, the stream
    reconnects with ``Last-Event-ID`` (``GET …/turns/{turn_id}/events``), up to
    ``max_retries`` times in a row, so no text is lost or repeated."""

    def __init__(self, client: AsyncKeelClient, call: Call[None], state: StreamState | None = None) -> None:
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

    async def __aiter__(self) -> AsyncIterator[StreamEvent]:
        call, failures = self._call, 0
        while True:
            cause: BaseException | None = None
            try:
                async for event in self._events(call):
                    failures = 0
                    yield event
            except httpx.TransportError as exc:
                cause = exc
            finally:
                await self.close()
            if self.state.ended:
                return
            session_id, turn_id = self.state.resume_target(cause)
            if failures >= self._client.retry.max_retries:
                raise APIConnectionError("the stream broke and could not be resumed") from cause
            await asyncio.sleep(self._client.retry.backoff(failures))
            failures += 1
            call = events_call(session_id, turn_id, self.state.last_event_id)

    async def _events(self, call: Call[None]) -> AsyncIterator[StreamEvent]:
        self._response = await self._client._send(call, stream=True)
        self.state.take_headers(self._response)
        decoder = SSEDecoder()
        async for chunk in self._response.aiter_bytes():
            for sse in decoder.feed(chunk):
                event = parse_event(sse)
                self.state.see(event)
                yield event
                if self.state.finished:
                    return
        decoder.close()

    async def until_done(self) -> m.ChatResponse | None:
        """Read to the end; the finished turn (None if it failed, was cancelled or waits)."""
        async for _ in self:
            pass
        return self.state.response

    async def text(self) -> str:
        """Read to the end and return the answer's text, honouring ``message.reset``."""
        done = await self.until_done()
        return done.message.content if done is not None else ""

    async def close(self) -> None:
        if self._response is not None:
            with contextlib.suppress(httpx.HTTPError):
                await self._response.aclose()
            self._response = None

    async def __aenter__(self) -> AsyncChatStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class _Resource:
    def __init__(self, client: AsyncKeelClient) -> None:
        self._client = client


class Auth(_Resource):
    async def me(self) -> m.MeResponse:
        return await self._client.send(c.get_me())

    async def dev_token(self, user_id: str, **claims: Any) -> m.TokenResponse:
        """A dev token (``KEEL_AUTH_MODE=dev`` only): ``groups``, ``roles``, ``email``…"""
        return await self._client.send(c.create_dev_token(user_id, claims))


class Sessions(_Resource):
    async def list(self, *, limit: int | None = None, before: datetime | str | None = None) -> m.SessionList:
        return await self._client.send(c.list_sessions(limit, before))

    async def get(self, session_id: str) -> m.SessionDetail:
        return await self._client.send(c.get_session(session_id))

    async def rename(self, session_id: str, title: str) -> m.SessionSummary:
        return await self._client.send(c.rename_session(session_id, title))

    async def delete(self, session_id: str) -> None:
        await self._client.send(c.delete_session(session_id))


class Turns(_Resource):
    async def cancel(self, session_id: str, turn_id: str) -> m.CancelAccepted:
        return await self._client.send(c.cancel_turn(session_id, turn_id))

    def events(self, session_id: str, turn_id: str, *, last_event_id: str | None = None) -> AsyncChatStream:
        """A turn's events after ``last_event_id`` (all without it), then live."""
        state = StreamState(session_id=session_id, turn_id=turn_id, last_event_id=last_event_id)
        return AsyncChatStream(self._client, events_call(session_id, turn_id, last_event_id), state)


class Documents(_Resource):
    async def list(self, kb_id: str) -> m.DocumentList:
        return await self._client.send(c.list_documents(kb_id))

    async def get(self, kb_id: str, doc_id: str) -> m.DocumentView:
        return await self._client.send(c.get_document(kb_id, doc_id))

    async def delete(self, kb_id: str, doc_id: str) -> None:
        await self._client.send(c.delete_document(kb_id, doc_id))

    async def share(
        self, kb_id: str, doc_id: str, *, user_ids: Sequence[str] = (), group_ids: Sequence[str] = ()
    ) -> m.ShareResponse:
        return await self._client.send(c.share_document(kb_id, doc_id, user_ids, group_ids, share=True))

    async def unshare(
        self, kb_id: str, doc_id: str, *, user_ids: Sequence[str] = (), group_ids: Sequence[str] = ()
    ) -> m.ShareResponse:
        return await self._client.send(c.share_document(kb_id, doc_id, user_ids, group_ids, share=False))

    async def wait(
        self, kb_id: str, doc_id: str, *, timeout_s: float = 300, interval_s: float = 0.5
    ) -> m.DocumentView:
        """Poll until the document is ``ready`` or ``failed`` (``KeelError`` ``timeout`` after that)."""
        deadline = time.monotonic() + timeout_s
        while True:
            doc = await self.get(kb_id, doc_id)
            if doc.status != "processing":
                return doc
            if time.monotonic() > deadline:
                raise KeelError(f"document {doc_id} still processing after {timeout_s} s", code="timeout")
            await asyncio.sleep(interval_s)


class KnowledgeBases(_Resource):
    def __init__(self, client: AsyncKeelClient) -> None:
        super().__init__(client)
        self.documents = Documents(client)

    async def list(self) -> m.KnowledgeBaseList:
        return await self._client.send(c.list_knowledge_bases())

    async def personal_id(self) -> str:
        """The id of my personal knowledge base."""
        for kb in (await self.list()).knowledge_bases:
            if kb.personal:
                return kb.id
        raise KeelError("no personal knowledge base is listed for you", code="knowledge_base_not_found")

    async def upload(
        self, kb_id: str, path: str | Path, *, on_progress: ProgressCallback | None = None
    ) -> m.DocumentAccepted:
        """Upload one file (202: indexed by a workflow; see ``documents.wait``).
        ``on_progress(UploadProgress)`` is called as the body is sent."""
        path = Path(path)
        with path.open("rb") as handle:  # noqa: ASYNC230 - httpx reads multipart files synchronously too
            part = (path.name, ProgressFile(handle, path.name, on_progress), content_type_for(path.name))
            return await self._client.send(c.upload_document(kb_id, {"file": part}))

    async def ingest(
        self, kb_id: str, paths: Sequence[str | Path], *, on_progress: ProgressCallback | None = None
    ) -> m.BatchAccepted:
        """Upload many files as one batch (``POST …/ingestions``); follow it with ``ingestion``."""
        with contextlib.ExitStack() as stack:
            parts: list[tuple[str, Any]] = []
            for raw in paths:
                path = Path(raw)
                handle = stack.enter_context(path.open("rb"))  # noqa: ASYNC230
                wrapped = ProgressFile(handle, path.name, on_progress)
                parts.append(("files", (path.name, wrapped, content_type_for(path.name))))
            return await self._client.send(c.start_ingestion(kb_id, parts))

    async def ingestion(self, batch_id: str) -> m.BatchStatus:
        return await self._client.send(c.get_ingestion(batch_id))

    async def query(self, kb_id: str, text: str, top_k: int | None = None) -> m.QueryResponse:
        return await self._client.send(c.query_knowledge_base(kb_id, text, top_k))


class Tools(_Resource):
    async def list(self) -> m.ToolList:
        return await self._client.send(c.list_tools())


class Agents(_Resource):
    async def list(self) -> m.AgentList:
        return await self._client.send(c.list_agents())


class Approvals(_Resource):
    async def list(self) -> m.ApprovalList:
        return await self._client.send(c.list_approvals())

    async def approve(self, approval_id: str, comment: str | None = None) -> m.ApprovalOut:
        return await self._client.send(c.decide_approval(approval_id, "approve", comment))

    async def deny(self, approval_id: str, reason: str | None = None) -> m.ApprovalOut:
        return await self._client.send(c.decide_approval(approval_id, "deny", reason))


class ApiKeys(_Resource):
    async def create(
        self, name: str, scopes: Sequence[str], *, expires_at: datetime | str | None = None
    ) -> m.ApiKeyCreated:
        return await self._client.send(c.create_api_key(name, scopes, expires_at))

    async def list(self) -> m.ApiKeyList:
        return await self._client.send(c.list_api_keys())

    async def rotate(self, key_id: str) -> m.ApiKeyCreated:
        return await self._client.send(c.rotate_api_key(key_id))

    async def revoke(self, key_id: str) -> None:
        await self._client.send(c.revoke_api_key(key_id))


class Usage(_Resource):
    async def get(self) -> m.UsageView:
        return await self._client.send(c.get_my_usage())


class AdminTools(_Resource):
    async def list(self) -> m.ToolServerList:
        return await self._client.send(c.list_tool_servers())

    async def add(self, **fields: Any) -> m.ToolServerView:
        """Allowlist an MCP server (``ToolServerRequest`` fields: ``name``, ``transport``, ``url``…)."""
        return await self._client.send(c.add_tool_server(fields))

    async def update(self, server_id: str, **fields: Any) -> m.ToolServerView:
        """Change an entry (``ToolServerPatch`` fields: ``enabled``, ``requires_approval``…)."""
        return await self._client.send(c.update_tool_server(server_id, fields))

    async def remove(self, server_id: str) -> None:
        await self._client.send(c.remove_tool_server(server_id))


class AdminFailedOperations(_Resource):
    async def list(self, status: str | None = None) -> m.FailedOperationList:
        return await self._client.send(c.list_failed_operations(status))

    async def retry(self, op_id: str) -> m.FailedOperationView:
        return await self._client.send(c.retry_failed_operation(op_id))


class AdminBudgets(_Resource):
    async def get(self, user_id: str) -> m.BudgetView:
        return await self._client.send(c.get_user_budget(user_id))

    async def set(
        self, user_id: str, *, daily_tokens: int | None = None, monthly_tokens: int | None = None
    ) -> m.BudgetView:
        """Set a user's override (None = unlimited)."""
        return await self._client.send(c.set_user_budget(user_id, daily_tokens, monthly_tokens))

    async def clear(self, user_id: str) -> None:
        await self._client.send(c.clear_user_budget(user_id))


class AdminAudit(_Resource):
    async def list(self, **filters: Any) -> m.AuditEventList:
        """Filters: ``user_id``, ``event``, ``since``, ``until``, ``limit``, ``before_seq``."""
        return await self._client.send(c.list_audit_events(filters))

    async def export(self, **filters: Any) -> builtins.list[dict[str, Any]]:
        return await self._client.send(c.export_audit_events(filters))

    async def verify(self) -> m.AuditChainView:
        return await self._client.send(c.verify_audit_chain())


class AdminKnowledgeBases(_Resource):
    async def create(self, name: str, description: str | None = None) -> m.KnowledgeBaseView:
        return await self._client.send(c.create_org_knowledge_base(name, description))


class AdminUsage(_Resource):
    async def get(
        self,
        *,
        user_id: str | None = None,
        first_day: datetime | str | None = None,
        last_day: datetime | str | None = None,
    ) -> m.AdminUsageView:
        return await self._client.send(c.admin_usage(user_id, first_day, last_day))


class Admin(_Resource):
    def __init__(self, client: AsyncKeelClient) -> None:
        super().__init__(client)
        self.tools = AdminTools(client)
        self.failed_operations = AdminFailedOperations(client)
        self.budgets = AdminBudgets(client)
        self.audit = AdminAudit(client)
        self.knowledge_bases = AdminKnowledgeBases(client)
        self.usage = AdminUsage(client)
