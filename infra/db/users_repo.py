"""The user directory in Postgres (``user_directory``; docs/identity.md#user-directory).

Rows come from two writers only: :meth:`UserDirectory.record_sign_in` (a person who
signed in: dev token, EntraID token, web session) and :meth:`UserDirectory.upsert_from_graph`
(a person EntraID itself returned for an email). An email belongs to one row: the
latest writer that carries it takes it, and any other row holding it loses it
(the address moved to another account).
"""

from __future__ import annotations

import asyncpg

from core.models.directory import SIGN_IN_METHODS, DirectoryUser, normalize_email
from core.models.principal import Principal

_COLUMNS = "user_id, email, display_name, groups, roles, source, active, last_sign_in_at"
_MAX_IN_GROUP = 500
_ATTEMPTS = 3  # a concurrent writer of the same email can win the unique index once or twice

_RELEASE_EMAIL = (
    "UPDATE user_directory SET email = NULL, email_normalized = NULL, updated_at = now()"
    " WHERE email_normalized = $1 AND user_id <> $2"
)
_RECORD_SIGN_IN = (
    "INSERT INTO user_directory"
    " (user_id, email, email_normalized, display_name, groups, roles, source, active, last_sign_in_at)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7, true, now())"
    " ON CONFLICT (user_id) DO UPDATE SET"
    " email = EXCLUDED.email, email_normalized = EXCLUDED.email_normalized,"
    " display_name = EXCLUDED.display_name, groups = EXCLUDED.groups, roles = EXCLUDED.roles,"
    " source = EXCLUDED.source, active = true, last_sign_in_at = now(), updated_at = now()"
)
# A Graph look-up never overrides what a sign-in recorded (groups and roles: a token's
# app roles are not in Graph); it refreshes the email it was found by, the name and
# whether the account is enabled. An entry that only ever came from Graph is replaced.
_UPSERT_FROM_GRAPH = (
    "INSERT INTO user_directory"
    " (user_id, email, email_normalized, display_name, groups, roles, source, active)"
    " VALUES ($1, $2, $3, $4, $5, $6, 'graph', $7)"
    " ON CONFLICT (user_id) DO UPDATE SET"
    " email = EXCLUDED.email, email_normalized = EXCLUDED.email_normalized,"
    " display_name = COALESCE(EXCLUDED.display_name, user_directory.display_name),"
    " active = EXCLUDED.active, updated_at = now(),"
    " groups = CASE WHEN user_directory.last_sign_in_at IS NULL"
    " THEN EXCLUDED.groups ELSE user_directory.groups END,"
    " roles = CASE WHEN user_directory.last_sign_in_at IS NULL"
    " THEN EXCLUDED.roles ELSE user_directory.roles END,"
    " source = CASE WHEN user_directory.last_sign_in_at IS NULL"
    " THEN 'graph' ELSE user_directory.source END"
)


def _emails(raw: str | None) -> tuple[str | None, str | None]:
    """(the email as given, trimmed; its look-up key), or (None, None) when unusable."""
    normalized = normalize_email(raw)
    if raw is None or normalized is None:
        return None, None
    return raw.strip(), normalized


def _user(row: asyncpg.Record) -> DirectoryUser:
    values = dict(row)
    values["groups"] = tuple(values["groups"] or ())
    values["roles"] = tuple(values["roles"] or ())
    return DirectoryUser.model_validate(values)


class UserDirectory:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def record_sign_in(self, principal: Principal) -> None:
        """Upsert the person who signed in: email, name, groups and roles are replaced by
        this sign-in's, ``last_sign_in_at`` is now, the entry is active (EntraID signs no
        disabled account in); ``created_at`` is kept.

        Only people: ``dev``, ``oidc`` and ``session`` principals (``ValueError`` otherwise).
        """
        if principal.auth_method not in SIGN_IN_METHODS:
            raise ValueError(f"{principal.auth_method!r} principals are not recorded in the directory")
        await self._write(
            _RECORD_SIGN_IN,
            principal.user_id,
            *_emails(principal.email),
            principal.display_name,
            list(principal.groups),
            list(principal.roles),
            principal.auth_method,
        )

    async def upsert_from_graph(self, user: DirectoryUser) -> None:
        """Store a person EntraID returned (``source='graph'``); see the module docstring
        for what it keeps of an entry a sign-in wrote."""
        await self._write(
            _UPSERT_FROM_GRAPH,
            user.user_id,
            *_emails(user.email),
            user.display_name,
            list(user.groups),
            list(user.roles),
            user.active,
        )

    async def by_email(self, email: str) -> DirectoryUser | None:
        """The entry holding ``email`` (case-insensitive), active or not."""
        normalized = normalize_email(email)
        if normalized is None:
            return None
        row = await self._pool.fetchrow(
            f"SELECT {_COLUMNS} FROM user_directory WHERE email_normalized = $1",  # noqa: S608 (constant)
            normalized,
        )
        return _user(row) if row else None

    async def by_id(self, user_id: str) -> DirectoryUser | None:
        row = await self._pool.fetchrow(
            f"SELECT {_COLUMNS} FROM user_directory WHERE user_id = $1",  # noqa: S608 (constant)
            user_id,
        )
        return _user(row) if row else None

    async def in_group(self, group_id: str, limit: int = 50) -> list[DirectoryUser]:
        """Active entries whose groups contain ``group_id`` (at most ``limit``, 1 to 500),
        the most recently signed-in first."""
        bounded = max(1, min(limit, _MAX_IN_GROUP))
        rows = await self._pool.fetch(
            f"SELECT {_COLUMNS} FROM user_directory"  # noqa: S608 (constant columns)
            " WHERE active AND groups @> ARRAY[$1]::text[]"
            " ORDER BY last_sign_in_at DESC NULLS LAST, user_id LIMIT $2",
            group_id,
            bounded,
        )
        return [_user(r) for r in rows]

    async def _write(
        self, sql: str, user_id: str, email: str | None, normalized: str | None, *rest: object
    ) -> None:
        """``sql`` in one transaction with taking ``normalized`` from any other entry."""
        for attempt in range(_ATTEMPTS):
            try:
                async with self._pool.acquire() as conn, conn.transaction():
                    if normalized is not None:
                        await conn.execute(_RELEASE_EMAIL, normalized, user_id)
                    await conn.execute(sql, user_id, email, normalized, *rest)
                return
            except asyncpg.UniqueViolationError:
                if attempt == _ATTEMPTS - 1:
                    raise
