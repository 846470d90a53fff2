"""Chat activities: every side effect of a chat turn.

``begin_turn`` and ``complete_turn`` are idempotent Postgres writes (a retry
after a crash re-uses the same keys). ``retrieve`` searches what the user may
read and streams one ``citation`` event per cited chunk. ``call_llm`` makes
exactly one model call with the request :class:`activities.prompt.PromptBuilder`
rendered (never in workflow history), streams the deltas into the turn's Redis
stream, and heartbeats on a timer for the whole call (a model may think longer
than the heartbeat timeout before its first token), so only a crashed worker's
attempt is retried, within the heartbeat timeout.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

import structlog
from agent_framework import ChatResponse
from temporalio import activity
from temporalio.exceptions import ApplicationError

from core.errors import ErrorCode, KeelError
from core.models.audit import AuditEntry, AuditEvent
from core.models.chat import (
    BeginTurnInput,
    Citation,
    CompleteTurnInput,
    DeleteSessionInput,
    EndSessionInput,
    LlmCallInput,
    LlmCallResult,
    RetrieveInput,
    RetrieveResult,
    Usage,
)
from core.models.principal import Principal
from core.models.tools import ToolCallRequest, ToolStepInput
from core.policy.acl import acl_filter_for_audience
from core.policy.redaction import DEFAULT_KEY_PATTERN, redact
from infra.agents import AgentRegistry
from infra.audit.log import AuditLog
from infra.call_metrics import SESSIONS_STARTED, TURNS
from infra.call_spans import llm_call, retrieval
from infra.circuit import CircuitOpen, Circuits, Ticket
from infra.db.chat_repo import ChatRepository
from infra.db.knowledge_repo import KnowledgeRepository
from infra.db.tools_repo import ToolsRepository
from infra.knowledge import KnowledgeServices, search_readable
from infra.llm import ChatModel
from infra.turn_events import TurnEventStream
from infra.usage_metrics import BUDGET_WARNINGS

from .circuits import vector_circuit
from .errors import circuit_open, from_keel_error, from_llm_failure, llm_unhealthy
from .heartbeat import heartbeating
from .prompt import PreparedCall, PromptBuilder
from .prompt import PromptConfig as PromptConfig  # the worker builds it with the activities
from .token_estimate import prompt_token_estimate

log = structlog.get_logger(__name__)

NO_MODEL_MESSAGE = (
    "No language model is configured for this Keel installation, so I cannot answer yet. "
    "An administrator can set KEEL_LLM_BASE_URL, KEEL_LLM_API_KEY and KEEL_LLM_MODEL "
    "(or the KEEL_AZURE_OPENAI_* settings) and restart the worker."
)


RETRIEVAL_ONLY_HEADER = (
    "No language model is configured, so this is retrieval-only mode: "
    "the most relevant passages you may read, with their sources. Nothing below was generated."
)
RETRIEVAL_UNAVAILABLE_NOTE = (
    "(Knowledge search is unavailable right now, so this answer does not use your documents.)\n\n"
)
_SNIPPET_CHARS = 300
#: Deltas arriving within this window are sent as one event (fewer Redis writes, same text).
_DELTA_FLUSH_S = 0.02
#: A model call heartbeats this often whether or not text arrives (LLM_STREAM's timeout is 10 s).
_HEARTBEAT_EVERY_S = 2.0


class ChatActivities:
    def __init__(
        self,
        *,
        repo: ChatRepository,
        events: TurnEventStream,
        model: ChatModel,
        prompt: PromptConfig,
        knowledge: KnowledgeServices,
        knowledge_repo: KnowledgeRepository,
        tools_repo: ToolsRepository,
        agents: AgentRegistry,
        audit: AuditLog,
        circuits: Circuits | None = None,
        tool_redact_pattern: str = DEFAULT_KEY_PATTERN,
    ) -> None:
        self._audit = audit
        self._circuits = circuits or Circuits(redis=None, configs={})
        self._redact = re.compile(tool_redact_pattern, re.IGNORECASE)
        self._repo = repo
        self._events = events
        self._model = model
        self._prompt = prompt
        self._knowledge = knowledge
        self._knowledge_repo = knowledge_repo
        self._tools_repo = tools_repo
        self._agents = agents
        #: The one prompt builder, shared with the budget reservation (activities.budget).
        self.prompts = PromptBuilder(
            repo=repo,
            knowledge_repo=knowledge_repo,
            tools_repo=tools_repo,
            agents=agents,
            config=prompt,
            model_configured=model.configured,
        )

    @activity.defn
    async def begin_turn(self, inp: BeginTurnInput) -> None:
        try:
            new_session = await self._repo.begin_turn(
                session_id=inp.session_id,
                user_id=inp.user_id,
                turn_id=inp.turn_id,
                message=inp.message,
                agent=inp.agent,
                agent_version=self._agents.get(inp.agent).revision,
            )
        except KeelError as err:
            raise from_keel_error(err) from err
        if new_session:
            SESSIONS_STARTED.inc()
        await self._events.publish(
            inp.turn_id, "turn.started", {"session_id": inp.session_id, "turn_id": inp.turn_id}
        )

    @activity.defn
    async def retrieve(self, inp: RetrieveInput) -> RetrieveResult:
        """Search what the user may read (the ACL filter from core.policy.acl) for this turn;
        with an audience (a Slack channel), only what the user and every member may read."""
        query = inp.query or await self._repo.user_message(inp.turn_id)
        if not query:
            return RetrieveResult()
        principal = Principal(user_id=inp.user_id, groups=tuple(inp.groups))
        kb_ids = inp.knowledge_base_ids or self._agents.get(inp.agent).knowledge_bases
        acl = acl_filter_for_audience(principal, inp.audience, knowledge_base_ids=kb_ids or None)
        ids = {"user_id": inp.user_id, "session_id": inp.session_id, "turn_id": inp.turn_id}
        with retrieval(
            knowledge_base_ids=kb_ids or (), top_k=self._prompt.retrieval_top_k, query=query, **ids
        ) as found:
            vector = await self._knowledge.embedder.embed_query(query)
            async with vector_circuit(self._circuits):
                await self._knowledge.index.ensure_collection(len(vector))
                hits = await search_readable(
                    self._knowledge.index,
                    self._knowledge_repo,
                    vector,
                    acl=acl,
                    top_k=self._prompt.retrieval_top_k,
                    query_text=query,
                    min_similarity=self._prompt.retrieval_min_score,
                )
            found.results(len(hits))
        citations = [
            Citation(
                document_id=h.doc_id,
                chunk_id=h.chunk_id,
                title=h.title,
                snippet=_snippet(h.text),
                score=h.score,
                page=h.page,
                chunk_index=h.chunk_index,
                owner_id=h.owner_id or None,
            )
            for h in hits
        ]
        for citation in citations:
            await self._events.publish(
                inp.turn_id, "citation", {"turn_id": inp.turn_id, **citation.model_dump()}
            )
        return RetrieveResult(citations=citations)

    @activity.defn
    async def call_llm(self, inp: LlmCallInput) -> LlmCallResult:
        """One model call (citations were streamed by ``retrieve``)."""
        return await heartbeating(self._call_llm(inp), every_s=_HEARTBEAT_EVERY_S)

    async def _call_llm(self, inp: LlmCallInput) -> LlmCallResult:
        info = activity.info()
        bound = log.bind(session_id=inp.session_id, turn_id=inp.turn_id, attempt=info.attempt)
        if info.attempt > 1 or inp.restream:
            # Clients drop the partial text of this step; this call streams it anew.
            reason = "retry" if info.attempt > 1 else "fallback"
            await self._events.publish(
                inp.turn_id, "message.reset", {"turn_id": inp.turn_id, "step": inp.step, "reason": reason}
            )
        if not self._model.configured:
            return await self._without_model(inp)

        prepared = await self.prompts.for_call(inp)
        max_tokens = _granted_output(inp, prepared)
        parts: list[str] = []
        if inp.retrieval_unavailable:
            parts.append(RETRIEVAL_UNAVAILABLE_NOTE)
            await self._delta(inp, RETRIEVAL_UNAVAILABLE_NOTE)
        pending: list[str] = []
        flushed_at = 0.0  # the first delta goes out at once (time to first token)
        ticket = await self._admit_llm(prepared.model, bound)
        model = self._model
        with llm_call(
            model=prepared.model or model.model_name or "unknown",
            provider=model.provider_name,
            server_address=model.server_address,
            session_id=inp.session_id,
            turn_id=inp.turn_id,
            max_tokens=max_tokens,
            temperature=prepared.temperature,
            messages=prepared.messages,
        ) as observed:
            try:
                stream = model.stream(
                    prepared.messages,
                    model=prepared.model,
                    tools=prepared.tool_schemas,
                    temperature=prepared.temperature,
                    max_output_tokens=max_tokens,
                )
                async for update in stream:
                    text = update.text
                    if not text:
                        continue
                    observed.first_token()
                    parts.append(text)
                    pending.append(text)
                    now = time.monotonic()
                    if now - flushed_at >= _DELTA_FLUSH_S:
                        await self._delta(inp, "".join(pending))
                        pending.clear()
                        flushed_at = now
                if pending:
                    await self._delta(inp, "".join(pending))
                final = await stream.get_final_response()
            except Exception as exc:
                raise await _llm_failed(exc, ticket, bound) from exc
            content = "".join(parts) or final.text
            finish_reason = str(final.finish_reason) if final.finish_reason else None
            usage = _usage(final)
            observed.finished(
                response_model=final.model,
                finish_reason=finish_reason,
                input_tokens=usage.prompt_tokens,
                output_tokens=usage.completion_tokens,
                output_text=content,
            )
        await ticket.success()
        # Every call the model makes is reported, offered or not: the workflow's policy decides.
        tool_calls = [await self._redacted(inp, call) for call in _tool_calls(final)]
        if not content.strip() and not tool_calls:
            raise from_llm_failure(ValueError("empty completion"))
        bound.info("llm.call_completed", chars=len(content), finish_reason=finish_reason)
        return LlmCallResult(
            content=content,
            finish_reason=finish_reason,
            model=final.model or inp.model_override or model.model_name,
            usage=usage,
            tool_calls=tool_calls,
        )

    @activity.defn
    async def record_tool_step(self, inp: ToolStepInput) -> None:
        await self._repo.record_tool_step(
            session_id=inp.session_id,
            turn_id=inp.turn_id,
            step=inp.step,
            calls=[c.model_dump(mode="json") for c in inp.calls],
            results=[r.model_dump(mode="json") for r in inp.results],
        )

    @activity.defn
    async def complete_turn(self, inp: CompleteTurnInput) -> None:
        result = inp.result
        if await self._repo.complete_turn(session_id=inp.session_id, turn_id=inp.turn_id, result=result):
            TURNS.labels(outcome=result.status).inc()  # once: a retry finds the outcome recorded
            if result.budget_warning is not None:
                BUDGET_WARNINGS.labels(period=result.budget_warning.period).inc()
        if result.status in ("failed", "cancelled") and result.error is not None:
            await self._events.publish(
                inp.turn_id,
                "error",
                {"turn_id": inp.turn_id, "code": result.error.code, "message": result.error.message},
            )
        else:
            if result.budget_warning is not None:
                await self._events.publish(
                    inp.turn_id,
                    "budget.warning",
                    {"turn_id": inp.turn_id, **result.budget_warning.model_dump(mode="json")},
                )
            await self._events.publish(inp.turn_id, "turn.completed", result.model_dump(mode="json"))

    @activity.defn
    async def delete_session(self, inp: DeleteSessionInput) -> None:
        await self._repo.delete_session(session_id=inp.session_id, user_id=inp.user_id)
        await self._tools_repo.forget_session_arguments(inp.session_id)

    @activity.defn
    async def end_session(self, inp: EndSessionInput) -> None:
        """Audit a conversation the workflow closed itself (idle); once per run."""
        await self._audit.record(
            AuditEntry(
                event=AuditEvent.SESSION_ENDED,
                user_id=inp.user_id,
                session_id=inp.session_id,
                resource_type="session",
                resource_id=inp.session_id,
                details={"reason": inp.reason, "turn_count": inp.turn_count},
                dedupe_key=f"session.ended:{inp.session_id}:{inp.run_id}",
            )
        )

    # ---------------------------------------------------------------- helpers
    async def _admit_llm(self, model: str | None, bound: Any) -> Ticket:
        """The model's circuit (one per model: a fallback model has its own); open: the
        model is not called and the turn fails now, saying when to try again."""
        try:
            return await self._circuits.get("llm", model or self._model.model_name).admit()
        except CircuitOpen as exc:
            bound.warning("llm.circuit_open", dependency=exc.dependency, retry_after_s=exc.retry_after_s)
            raise circuit_open(exc, "the model service", wait=False) from exc

    async def _redacted(self, inp: LlmCallInput, call: ToolCallRequest) -> ToolCallRequest:
        """The call as workflow history, approvals and the stream see it: secrets masked. The
        full arguments stay in Postgres under ``arguments_ref`` for the tool call alone."""
        shown = redact(call.arguments, self._redact)
        if shown == call.arguments:
            return call
        ref = f"{inp.session_id}:{inp.turn_id}:{inp.step}:{call.call_id}"
        await self._tools_repo.store_arguments(ref, session_id=inp.session_id, arguments=call.arguments)
        return call.model_copy(update={"arguments": shown, "arguments_ref": ref})

    async def _without_model(self, inp: LlmCallInput) -> LlmCallResult:
        """No model: the retrieved passages, plainly labelled, or a clear notice; never invented text."""
        if not inp.context:
            await self._delta(inp, NO_MODEL_MESSAGE)
            return LlmCallResult(
                content=NO_MODEL_MESSAGE,
                finish_reason="not_configured",
                configured=False,
                notice=ErrorCode.LLM_NOT_CONFIGURED,
            )
        texts = await self.prompts.context_texts(inp)
        lines = [RETRIEVAL_ONLY_HEADER, ""]
        for n, (citation, text) in enumerate(zip(inp.context, texts, strict=True), start=1):
            where = f", page {citation.page}" if citation.page else ""
            lines.append(f"[{n}] {citation.title}{where}:\n{text.strip()}\n")
        content = "\n".join(lines).rstrip() + "\n"
        await self._delta(inp, content)
        return LlmCallResult(
            content=content, finish_reason="retrieval_only", configured=False, notice="retrieval_only"
        )

    async def _delta(self, inp: LlmCallInput, text: str) -> None:
        # Best effort: without Redis the live stream loses pieces, the turn keeps its answer.
        await self._events.publish_delta(
            inp.turn_id, "message.delta", {"turn_id": inp.turn_id, "step": inp.step, "delta": text}
        )


async def _llm_failed(exc: Exception, ticket: Ticket, bound: Any) -> ApplicationError:
    """The activity's error for a failed model call, recorded against the circuit when it
    says the model service is unhealthy; ``circuit_open`` when it opened the circuit."""
    error = from_llm_failure(exc)
    bound.warning("llm.call_failed", error_type=error.type, error=str(exc)[:500])
    if not llm_unhealthy(exc):
        await ticket.success()  # the model answered (a refusal): it is up
        return error
    opened = await ticket.failure()
    return error if opened is None else circuit_open(opened, "the model service", wait=False)


def _granted_output(inp: LlmCallInput, prepared: PreparedCall) -> int:
    """The call's ``max_tokens``: the budget's grant, shrunk if the prompt rendered now is
    larger than the one reserved for (it never is unless the transcript changed between)."""
    max_tokens = min(inp.max_tokens or prepared.max_output_tokens, prepared.max_output_tokens)
    if inp.token_allowance is None:
        return max_tokens
    room = inp.token_allowance - prompt_token_estimate(prepared.messages, prepared.tool_schemas)
    if room < 1:
        raise ApplicationError(
            "the prompt grew beyond the tokens reserved for it",
            type=ErrorCode.BUDGET_EXCEEDED,
            non_retryable=True,
        )
    return min(max_tokens, room)


def _usage(final: ChatResponse[Any]) -> Usage:
    usage = final.usage_details or {}
    return Usage(
        prompt_tokens=int(usage.get("input_token_count") or 0),
        completion_tokens=int(usage.get("output_token_count") or 0),
    )


def _snippet(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= _SNIPPET_CHARS else flat[: _SNIPPET_CHARS - 1] + "…"


def _tool_calls(final: ChatResponse[Any]) -> list[ToolCallRequest]:
    calls: list[ToolCallRequest] = []
    for message in final.messages:
        for content in message.contents:
            if content.type != "function_call":
                continue
            raw = content.arguments
            if isinstance(raw, str):
                try:
                    parsed = json.loads(raw) if raw.strip() else {}
                except json.JSONDecodeError:
                    parsed = {"_unparsed": raw[:2000]}
            else:
                parsed = dict(raw or {})
            if not isinstance(parsed, dict):
                parsed = {"_value": parsed}
            calls.append(
                ToolCallRequest(
                    call_id=content.call_id or f"call-{len(calls)}", name=content.name or "", arguments=parsed
                )
            )
    return calls
