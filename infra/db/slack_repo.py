"""The Slack conversations Keel keeps: which session a thread or ``/keel ask`` continues."""

from __future__ import annotations

import asyncpg


class SlackRepository:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def thread_session(
        self, *, team_id: str, channel_id: str, thread_ts: str, user_id: str
    ) -> str | None:
        value = await self._pool.fetchval(
            "SELECT session_id FROM slack_threads"
            " WHERE team_id = $1 AND channel_id = $2 AND thread_ts = $3 AND user_id = $4",
            team_id,
            channel_id,
            thread_ts,
            user_id,
        )
        return str(value) if value is not None else None

    async def link_thread(
        self, *, team_id: str, channel_id: str, thread_ts: str, user_id: str, session_id: str
    ) -> None:
        await self._pool.execute(
            "INSERT INTO slack_threads (team_id, channel_id, thread_ts, user_id, session_id)"
            " VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            team_id,
            channel_id,
            thread_ts,
            user_id,
            session_id,
        )

    async def command_session(self, *, team_id: str, channel_id: str, slack_user_id: str) -> str | None:
        value = await self._pool.fetchval(
            "SELECT session_id FROM slack_command_sessions"
            " WHERE team_id = $1 AND channel_id = $2 AND slack_user_id = $3",
            team_id,
            channel_id,
            slack_user_id,
        )
        return str(value) if value is not None else None

    async def set_command_session(
        self, *, team_id: str, channel_id: str, slack_user_id: str, session_id: str, replace: bool
    ) -> str:
        """Store ``session_id`` as the command session (``replace``: even if one exists);
        returns the session now current."""
        if replace:
            await self._pool.execute(
                "INSERT INTO slack_command_sessions (team_id, channel_id, slack_user_id, session_id)"
                " VALUES ($1, $2, $3, $4) ON CONFLICT (team_id, channel_id, slack_user_id)"
                " DO UPDATE SET session_id = EXCLUDED.session_id, updated_at = now()",
                team_id,
                channel_id,
                slack_user_id,
                session_id,
            )
            return session_id
        await self._pool.execute(
            "INSERT INTO slack_command_sessions (team_id, channel_id, slack_user_id, session_id)"
            " VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            team_id,
            channel_id,
            slack_user_id,
            session_id,
        )
        current = await self.command_session(
            team_id=team_id, channel_id=channel_id, slack_user_id=slack_user_id
        )
        return current or session_id
