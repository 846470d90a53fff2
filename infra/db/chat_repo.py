"""Sessions, turns and transcript in Postgres.

Writes are idempotent (natural keys + ``ON CONFLICT DO NOTHING``; counters only
move when a turn leaves ``running``), so a retried activity never duplicates a
message. Every read takes the caller's ``user_id``: a row that is not theirs
reads as absent.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from core.errors import ErrorCode, KeelError
from core.models.chat import TurnResult
from core.models.sessions import SessionTotals, TranscriptMessage, TurnSummary

_TITLE_CHARS = 80
_TOOL_SEQ_BASE = 100
_TOOL_SEQ_STRIDE = 100


class SessionRecord(SessionTotals):
    """A session row: the public summary and totals, and its owner."""

    user_id: str


class MessageRecord(TranscriptMessage):
    """A transcript row: the public message, its order in the turn and its metadata."""

    seq: int
    metadata: dict[str, Any] = {}


class TurnRecord(TurnSummary):
    """A turn row: the public summary, and what the turn used and returned."""

    session_id: str
    user_id: str
    model: str | None
    prompt_tokens: int
    completion_tokens: int
    error_message: str | None
    result: dict[str, Any] | None


def _title_from(message: str) -> str:
    line = " ".join(message.split())
    return line if len(line) <= _TITLE_CHARS else line[: _TITLE_CHARS - 1] + "…"


class ChatRepository:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    # ---------------------------------------------------------------- writes
    async def begin_turn(
        self,
        *,
        session_id: str,
        user_id: str,
        turn_id: str,
        message: str,
        agent: str,
        agent_version: str | None = None,
    ) -> bool:
        """Record the turn's start (idempotent); True when this call created the session."""
        async with self._pool.acquire() as conn, conn.transaction():
            created = await conn.fetchval(
                "INSERT INTO chat_sessions (id, user_id, title, agent) VALUES ($1, $2, $3, $4)"
                " ON CONFLICT (id) DO NOTHING RETURNING id",
                session_id,
                user_id,
                _title_from(message),
                agent,
            )
            owner = await conn.fetchval("SELECT user_id FROM chat_sessions WHERE id = $1", session_id)
            if owner != user_id:
                raise KeelError(ErrorCode.SESSION_NOT_FOUND, "session not found")
            await conn.execute(
                "INSERT INTO chat_turns (id, session_id, user_id, status, agent, agent_version)"
                " VALUES ($1, $2, $3, 'running', $4, $5) ON CONFLICT (id) DO NOTHING",
                turn_id,
                session_id,
                user_id,
                agent,
                agent_version,
            )
            await conn.execute(
                "INSERT INTO chat_messages (session_id, turn_id, seq, role, content)"
                " VALUES ($1, $2, 0, 'user', $3) ON CONFLICT (turn_id, seq) DO NOTHING",
                session_id,
                turn_id,
                message,
            )
            await conn.execute(
                "UPDATE chat_sessions SET updated_at = now(), agent_version = COALESCE($2, agent_version)"
                " WHERE id = $1",
                session_id,
                agent_version,
            )
        return created is not None

    async def complete_turn(self, *, session_id: str, turn_id: str, result: TurnResult) -> bool:
        """Record the outcome once; returns False when it was already recorded."""
        async with self._pool.acquire() as conn, conn.transaction():
            if result.status == "completed" and result.message.content:
                await conn.execute(
                    "INSERT INTO chat_messages (session_id, turn_id, seq, role, content, metadata)"
                    " VALUES ($1, $2, 1, 'assistant', $3, $4) ON CONFLICT (turn_id, seq) DO NOTHING",
                    session_id,
                    turn_id,
                    result.message.content,
                    {"citations": [c.model_dump() for c in result.message.citations], "model": result.model},
                )
            updated = await conn.fetchval(
                "UPDATE chat_turns SET status = $2, model = $3, prompt_tokens = $4,"
                " completion_tokens = $5, error_code = $6, error_message = $7, result = $8,"
                " completed_at = now() WHERE id = $1 AND status = 'running' RETURNING id",
                turn_id,
                result.status,
                result.model,
                result.usage.prompt_tokens,
                result.usage.completion_tokens,
                result.error.code if result.error else None,
                result.error.message if result.error else None,
                result.model_dump(mode="json"),
            )
            if updated is None:
                return False
            await conn.execute(
                "UPDATE chat_sessions SET turn_count = turn_count + 1, prompt_tokens = prompt_tokens + $2,"
                " completion_tokens = completion_tokens + $3, updated_at = now() WHERE id = $1",
                session_id,
                result.usage.prompt_tokens,
                result.usage.completion_tokens,
            )
            return True

    async def record_tool_step(
        self,
        *,
        session_id: str,
        turn_id: str,
        step: int,
        calls: list[dict[str, Any]],
        results: list[dict[str, Any]],
    ) -> None:
        """The model's tool calls of one step and their results, in transcript order (idempotent)."""
        base = _TOOL_SEQ_BASE + step * _TOOL_SEQ_STRIDE
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO chat_messages (session_id, turn_id, seq, role, content, metadata)"
                " VALUES ($1, $2, $3, 'assistant', '', $4) ON CONFLICT (turn_id, seq) DO NOTHING",
                session_id,
                turn_id,
                base,
                {"tool_calls": calls},
            )
            for n, result in enumerate(results, start=1):
                await conn.execute(
                    "INSERT INTO chat_messages (session_id, turn_id, seq, role, content, metadata)"
                    " VALUES ($1, $2, $3, 'tool', $4, $5) ON CONFLICT (turn_id, seq) DO NOTHING",
                    session_id,
                    turn_id,
                    base + n,
                    str(result.get("result", "")),
                    {"call_id": result["call_id"], "name": result["name"], "status": result["status"]},
                )

    async def delete_session(self, *, session_id: str, user_id: str) -> bool:
        status: str = await self._pool.execute(
            "DELETE FROM chat_sessions WHERE id = $1 AND user_id = $2", session_id, user_id
        )
        return status.endswith(" 1")

    # ----------------------------------------------------------------- reads
    async def history(self, session_id: str, *, limit: int) -> list[MessageRecord]:
        """The last ``limit`` messages of a session, oldest first (for prompt rendering)."""
        rows = await self._pool.fetch(
            "SELECT id, turn_id, seq, role, content, metadata, created_at FROM ("
            " SELECT * FROM chat_messages WHERE session_id = $1 ORDER BY id DESC LIMIT $2"
            ") recent ORDER BY id",
            session_id,
            limit,
        )
        return [MessageRecord(**dict(r)) for r in rows]

    async def user_message(self, turn_id: str) -> str | None:
        text: str | None = await self._pool.fetchval(
            "SELECT content FROM chat_messages WHERE turn_id = $1 AND seq = 0", turn_id
        )
        return text

    async def rename_session(self, session_id: str, *, user_id: str, title: str) -> SessionRecord | None:
        row = await self._pool.fetchrow(
            "UPDATE chat_sessions SET title = $3 WHERE id = $1 AND user_id = $2 RETURNING *",
            session_id,
            user_id,
            _title_from(title),
        )
        return SessionRecord(**dict(row)) if row else None

    async def get_session(self, session_id: str, *, user_id: str) -> SessionRecord | None:
        row = await self._pool.fetchrow(
            "SELECT * FROM chat_sessions WHERE id = $1 AND user_id = $2", session_id, user_id
        )
        return SessionRecord(**dict(row)) if row else None

    async def list_sessions(
        self, *, user_id: str, limit: int, before: datetime | None = None
    ) -> list[SessionRecord]:
        rows = await self._pool.fetch(
            "SELECT * FROM chat_sessions WHERE user_id = $1 AND ($2::timestamptz IS NULL OR updated_at < $2)"
            " ORDER BY updated_at DESC LIMIT $3",
            user_id,
            before,
            limit,
        )
        return [SessionRecord(**dict(r)) for r in rows]

    async def messages(self, session_id: str, *, user_id: str) -> list[MessageRecord]:
        rows = await self._pool.fetch(
            "SELECT m.id, m.turn_id, m.seq, m.role, m.content, m.created_at FROM chat_messages m"
            " JOIN chat_sessions s ON s.id = m.session_id WHERE m.session_id = $1 AND s.user_id = $2"
            " ORDER BY m.id",
            session_id,
            user_id,
        )
        return [MessageRecord(**dict(r)) for r in rows]

    async def turns(self, session_id: str, *, user_id: str) -> list[TurnRecord]:
        """The session's turns, oldest first."""
        rows = await self._pool.fetch(
            "SELECT * FROM chat_turns WHERE session_id = $1 AND user_id = $2 ORDER BY created_at, id",
            session_id,
            user_id,
        )
        return [TurnRecord(**dict(r)) for r in rows]

    async def get_turn(self, turn_id: str, *, session_id: str, user_id: str) -> TurnRecord | None:
        row = await self._pool.fetchrow(
            "SELECT * FROM chat_turns WHERE id = $1 AND session_id = $2 AND user_id = $3",
            turn_id,
            session_id,
            user_id,
        )
        return TurnRecord(**dict(row)) if row else None
