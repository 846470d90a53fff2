"""The budget reservation and the model call share one PromptBuilder: the request the
reservation rendered is the one the model call sends (a model step renders its prompt once)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from core.models.chat import (
    AssistantMessage,
    BeginTurnInput,
    CompleteTurnInput,
    LlmCallInput,
    TurnResult,
)
from core.models.reservations import ReserveBudgetInput
from infra.knowledge import open_knowledge
from infra.settings import Settings
from workers.chat_worker import chat_activities


async def test_the_model_call_takes_the_request_its_reservation_rendered(settings: Settings) -> None:
    session_id, turn_id, user = uuid.uuid4().hex, uuid.uuid4().hex, "prompt-once"
    async with open_knowledge(settings) as knowledge, chat_activities(settings, knowledge) as acts:
        await acts.chat.begin_turn(
            BeginTurnInput(session_id=session_id, user_id=user, turn_id=turn_id, message="hello once")
        )
        call = LlmCallInput(session_id=session_id, turn_id=turn_id)
        grant = await acts.budget.reserve_budget(
            ReserveBudgetInput(reservation_id=str(uuid.uuid4()), user_id=user, call=call)
        )
        assert grant.allowed
        # The transcript changes after the reservation: a fresh rendering would show it.
        await acts.chat.complete_turn(
            CompleteTurnInput(
                session_id=session_id,
                user_id=user,
                turn_id=turn_id,
                result=TurnResult(
                    session_id=session_id,
                    turn_id=turn_id,
                    status="completed",
                    message=AssistantMessage(content=f"stored at {datetime.now(UTC)}"),
                ),
            )
        )
        reserved_call = call.model_copy(update={"reservation_id": grant.reservation_id})
        sent = await acts.chat.prompts.for_call(reserved_call)
        assert [m.role for m in sent.messages] == ["system", "user"]  # not rendered again
        # Taken once: a retry of the call renders anew.
        again = await acts.chat.prompts.for_call(reserved_call)
        assert [m.role for m in again.messages] == ["system", "user", "assistant"]
