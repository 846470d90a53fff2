"""Server-side web sessions in Redis, for the web UI's sign-in.

The browser holds only an opaque random session id (``HttpOnly``, ``Secure``,
``SameSite=Lax`` cookie) and a CSRF token (a readable cookie the page echoes in
``X-CSRF-Token``: the double-submit pattern, checked against the copy stored
here). Signing out deletes the record, so a stolen cookie dies with it.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass

import redis.asyncio as aioredis

from core.models.principal import Principal

_PREFIX = "keel:websession:"


@dataclass(frozen=True)
class WebSession:
    session_id: str
    csrf_token: str
    principal: Principal
    #: Seconds left when created or rotated (0 when read back with :meth:`WebSessionStore.get`).
    ttl_s: int = 0


class WebSessionStore:
    def __init__(self, redis: aioredis.Redis, *, ttl_s: int) -> None:
        self._redis = redis
        self._ttl_s = ttl_s

    @property
    def ttl_s(self) -> int:
        return self._ttl_s

    async def create(self, principal: Principal, *, ttl_s: int | None = None) -> WebSession:
        ttl = ttl_s if ttl_s is not None else self._ttl_s
        session = WebSession(
            session_id=secrets.token_urlsafe(32),
            csrf_token=secrets.token_urlsafe(32),
            principal=principal,
            ttl_s=ttl,
        )
        record = {"csrf": session.csrf_token, "principal": principal.model_dump(mode="json")}
        await self._redis.set(_PREFIX + session.session_id, json.dumps(record), ex=ttl)
        return session

    async def get(self, session_id: str) -> WebSession | None:
        if not session_id or len(session_id) > 128:
            return None
        raw = await self._redis.get(_PREFIX + session_id)
        if raw is None:
            return None
        record = json.loads(raw)
        return WebSession(
            session_id=session_id,
            csrf_token=str(record["csrf"]),
            principal=Principal.model_validate(record["principal"]),
        )

    async def rotate(self, session_id: str) -> WebSession | None:
        """A fresh id and CSRF token for the same sign-in (the old id stops working).

        The sign-in keeps its expiry: rotating never extends a session beyond
        ``ttl_s`` after the sign-in (a new sign-in is needed then).
        """
        current = await self.get(session_id)
        if current is None:
            return None
        remaining = int(await self._redis.ttl(_PREFIX + session_id))
        await self.delete(session_id)
        if remaining <= 0:
            return None
        return await self.create(current.principal, ttl_s=remaining)

    async def delete(self, session_id: str) -> None:
        if session_id:
            await self._redis.delete(_PREFIX + session_id)
