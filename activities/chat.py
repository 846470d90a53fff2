"""Chat activities: every side effect of a chat turn.

``begin_turn`` and ``complete_turn`` are idempotent Postgres writes (a retry
after a crash re-uses the same keys). ``call_llm`` makes exactly one model call,
renders the prompt from the transcript here (never in workflow history),
streams the deltas into the turn's Redis stream and heartbeats while it does,
so a crashed worker's attempt is retried within the heartbeat timeout.
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog
from agent_framework import Message
from temporalio import activity

from core.errors import KeelError
from core.models.chat import (
    BeginTurnInput,
    CompleteTurnInput,
    DeleteSessionInput,
    LlmCallInput,
    LlmCallResult,
    Usage,
)
from infra.db.chat_repo import ChatRepository
from infra.llm import ChatModel
from infra.turn_events import TurnEventStream

from .errors import from_keel_error, from_llm_failure

log = structlog.get_logger(__name__)

NO_MODEL_MESSAGE = (
    "No language model is configured for this Keel installation, so I cannot answer yet. "
    "An administrator can set KEEL_LLM_BASE_URL, KEEL_LLM_API_KEY and KEEL_LLM_MODEL "
    "(or the KEEL_AZURE_OPENAI_* settings) and restart the worker."
)


@dataclass(frozen=True)
class PromptConfig:
    system_prompt: str
    history_max_messages: int


class ChatActivities:
    def __init__(
        self,
        *,
        repo: ChatRepository,
        events: TurnEventStream,
        model: ChatModel,
        prompt: PromptConfig,
    ) -> None:
        self._repo = repo
        self._events = events
        self._model = model
        self._prompt = prompt

    @activity.defn
    async def begin_turn(self, inp: BeginTurnInput) -> None:
        try:
            await self._repo.begin_turn(
                session_id=inp.session_id,
                user_id=inp.user_id,
                turn_id=inp.turn_id,
                message=inp.message,
                agent=inp.agent,
            )
        except KeelError as err:
            raise from_keel_error(err) from err
        await self._events.publish(
            inp.turn_id, "turn.started", {"session_id": inp.session_id, "turn_id": inp.turn_id}
        )

    @activity.defn
    async def call_llm(self, inp: LlmCallInput) -> LlmCallResult:
        info = activity.info()
        bound = log.bind(session_id=inp.session_id, turn_id=inp.turn_id, attempt=info.attempt)
        if info.attempt > 1 or inp.restream:
            # Clients drop the partial text of this step; this call streams it anew.
            reason = "retry" if info.attempt > 1 else "fallback"
            await self._events.publish(
                inp.turn_id, "message.reset", {"turn_id": inp.turn_id, "step": inp.step, "reason": reason}
            )
        if not self._model.configured:
            await self._delta(inp, NO_MODEL_MESSAGE)
            return LlmCallResult(content=NO_MODEL_MESSAGE, finish_reason="not_configured", configured=False)

        messages = await self._render_prompt(inp.session_id)
        parts: list[str] = []
        try:
            stream = self._model.stream(messages, model=inp.model_override)
            async for update in stream:
                text = update.text
                if text:
                    parts.append(text)
                    await self._delta(inp, text)
                activity.heartbeat(len(parts))
            final = await stream.get_final_response()
        except Exception as exc:
            error = from_llm_failure(exc)
            bound.warning("llm.call_failed", error_type=error.type, error=str(exc)[:500])
            raise error from exc
        content = "".join(parts) or final.text
        if not content:
            raise from_llm_failure(ValueError("empty completion"))
        usage = final.usage_details or {}
        bound.info("llm.call_completed", chars=len(content), finish_reason=str(final.finish_reason))
        return LlmCallResult(
            content=content,
            finish_reason=str(final.finish_reason) if final.finish_reason else None,
            model=final.model or inp.model_override or self._model.model_name,
            usage=Usage(
                prompt_tokens=int(usage.get("input_token_count") or 0),
                completion_tokens=int(usage.get("output_token_count") or 0),
            ),
        )

    @activity.defn
    async def complete_turn(self, inp: CompleteTurnInput) -> None:
        result = inp.result
        await self._repo.complete_turn(session_id=inp.session_id, turn_id=inp.turn_id, result=result)
        if result.status == "failed" and result.error is not None:
            await self._events.publish(
                inp.turn_id,
                "error",
                {"turn_id": inp.turn_id, "code": result.error.code, "message": result.error.message},
            )
        else:
            await self._events.publish(inp.turn_id, "turn.completed", result.model_dump(mode="json"))

    @activity.defn
    async def delete_session(self, inp: DeleteSessionInput) -> None:
        await self._repo.delete_session(session_id=inp.session_id, user_id=inp.user_id)

    # ---------------------------------------------------------------- helpers
    async def _render_prompt(self, session_id: str) -> list[Message]:
        history = await self._repo.history(session_id, limit=self._prompt.history_max_messages)
        messages = [Message("system", [self._prompt.system_prompt])]
        messages.extend(Message(m.role, [m.content]) for m in history if m.role in ("user", "assistant"))
        return messages

    async def _delta(self, inp: LlmCallInput, text: str) -> None:
        await self._events.publish(
            inp.turn_id, "message.delta", {"turn_id": inp.turn_id, "step": inp.step, "delta": text}
        )
