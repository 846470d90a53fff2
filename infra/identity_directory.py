"""The user directory's two halves: filling it at sign-in, and finding a person by email.

* :class:`SignInRecorder`: the API records every person who signs in (dev tokens,
  EntraID tokens, web sessions; never API keys or service principals, never guests),
  at most once per user per ``KEEL_DIRECTORY_RECORD_INTERVAL_S`` while the identity
  (email, name, groups, roles) stays the same (a Redis key per user, ``SET NX EX``,
  shared by every API process), and always at the web sign-in's callback.
  Recording never fails a request.
* :class:`DirectoryResolver`: an email → a Keel user, for integrations that know
  people by verified email (the Slack bot): the directory first, then EntraID
  through Microsoft Graph. Nobody is provisioned silently: an entry comes from a
  sign-in or from EntraID itself.

See docs/identity.md#user-directory.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from typing import Literal

import redis.asyncio as aioredis
import structlog
from pydantic import BaseModel, ConfigDict, model_validator

from core.models.directory import SIGN_IN_METHODS, DirectoryUser, normalize_email
from core.models.principal import Principal
from infra.auth.graph_users import GraphUsers
from infra.db.users_repo import UserDirectory

log = structlog.get_logger(__name__)

_SEEN_PREFIX = "keel:directory:seen:"
_RECORD_TIMEOUT_S = 3.0
#: after a failed write, the same identity tries again this much later (not on every request)
_RETRY_AFTER_S = 30

ResolutionStatus = Literal["found", "unknown", "guest", "disabled"]


class EmailResolution(BaseModel):
    """``found``: ``user`` is the person (active, a member). ``unknown``: nobody Keel can
    resolve (no directory entry, and Graph is not configured or has no single user with
    this email). ``guest``: an EntraID guest account. ``disabled``: a disabled account.
    ``user`` is set only when ``found``."""

    model_config = ConfigDict(frozen=True)

    status: ResolutionStatus
    user: DirectoryUser | None = None

    @model_validator(mode="after")
    def _user_only_when_found(self) -> EmailResolution:
        if (self.status == "found") != (self.user is not None):
            raise ValueError("a resolution carries a user exactly when it is 'found'")
        return self


class DirectoryResolver:
    """Who a verified email is in Keel. ``graph`` is ``None`` where Graph is not
    configured (dev mode): then only people who signed in are found."""

    def __init__(self, directory: UserDirectory, graph: GraphUsers | None) -> None:
        self._directory = directory
        self._graph = graph

    async def resolve_email(self, email: str) -> EmailResolution:
        """Directory first (an inactive entry is ``disabled``); then, when configured,
        Graph: a member with an enabled account is stored (``source='graph'``) and
        ``found``; a guest is ``guest``, a disabled account ``disabled`` (neither is
        stored); no user is ``unknown``.

        Raises ``KeelError(upstream_unavailable)`` when Graph cannot answer (retry).
        """
        normalized = normalize_email(email)
        if normalized is None:
            return EmailResolution(status="unknown")
        entry = await self._directory.by_email(normalized)
        if entry is not None:
            return EmailResolution(status="found", user=entry) if entry.active else _refused("disabled")
        if self._graph is None:
            return EmailResolution(status="unknown")
        person = await self._graph.find_by_email(normalized)
        if person is None:
            return EmailResolution(status="unknown")
        if person.is_guest:
            log.info("directory.graph_refused", user_id=person.id, why="guest")
            return _refused("guest")
        if not person.is_enabled:
            log.info("directory.graph_refused", user_id=person.id, why="disabled")
            return _refused("disabled")
        await self._directory.upsert_from_graph(await self._graph.directory_user(person, email=normalized))
        stored = await self._directory.by_id(person.id)
        if stored is None or not stored.active:  # not expected: just written
            return _refused("disabled")
        log.info("directory.graph_stored", user_id=person.id)
        return EmailResolution(status="found", user=stored)


def _refused(status: Literal["guest", "disabled"]) -> EmailResolution:
    return EmailResolution(status=status)


def _fingerprint(principal: Principal) -> str:
    """What a sign-in records, hashed: a changed email, name, groups or roles records
    again at once; the same identity at most once per interval."""
    facts = [principal.email, principal.display_name, list(principal.groups), list(principal.roles)]
    return hashlib.sha256(json.dumps(facts).encode()).hexdigest()[:16]


class SignInRecorder:
    """Records people who sign in into the :class:`UserDirectory`, throttled in Redis:
    ``keel:directory:seen:{user_id}`` holds what was last recorded (hashed) for the
    interval."""

    def __init__(self, directory: UserDirectory, redis: aioredis.Redis, *, interval_s: int) -> None:
        self._directory = directory
        self._redis = redis
        self._interval_s = interval_s

    @staticmethod
    def records(principal: Principal) -> bool:
        """People only: dev, oidc and session principals that are not guests."""
        return principal.auth_method in SIGN_IN_METHODS and not principal.guest

    async def seen(self, principal: Principal) -> bool:
        """An authenticated request: record ``principal`` unless the same identity was
        recorded in the last interval. True when written now. Never raises."""
        if not self.records(principal):
            return False
        key, fingerprint = _SEEN_PREFIX + principal.user_id, _fingerprint(principal)
        try:
            recorded = await self._redis.get(key)  # the common case: one read, nothing else
            if recorded == fingerprint:
                return False
            if recorded is None:
                if not await self._redis.set(key, fingerprint, nx=True, ex=self._interval_s):
                    return False  # a concurrent request of this user claimed the window
            else:  # another identity (new groups, roles, email): record now, new window
                await self._redis.set(key, fingerprint, ex=self._interval_s)
        except Exception as exc:  # Redis down: skip rather than write Postgres on every request
            log.warning("directory.record_skipped", user_id=principal.user_id, error=str(exc)[:200])
            return False
        if await self._record(principal):
            return True
        await self._back_off(key, fingerprint)
        return False

    async def signed_in(self, principal: Principal) -> bool:
        """A completed web sign-in: always recorded (the requests after it are throttled
        like :meth:`seen`). True when written. Never raises."""
        if not self.records(principal):
            return False
        key, fingerprint = _SEEN_PREFIX + principal.user_id, _fingerprint(principal)
        if not await self._record(principal):
            await self._back_off(key, fingerprint)
            return False
        await self._mark(key, fingerprint, self._interval_s)
        return True

    async def _back_off(self, key: str, fingerprint: str) -> None:
        """A write failed: the same identity tries again soon, not on every request (a
        database outage must not add a write attempt to each one)."""
        await self._mark(key, fingerprint, min(_RETRY_AFTER_S, self._interval_s))

    async def _mark(self, key: str, fingerprint: str, ttl_s: int) -> None:
        try:
            await self._redis.set(key, fingerprint, ex=ttl_s)
        except Exception as exc:
            log.warning("directory.record_skipped", key=key, error=str(exc)[:200])

    async def _record(self, principal: Principal) -> bool:
        try:
            await asyncio.wait_for(self._directory.record_sign_in(principal), _RECORD_TIMEOUT_S)
        except Exception as exc:
            log.warning(
                "directory.record_failed",
                user_id=principal.user_id,
                error=f"{type(exc).__name__}: {str(exc)[:200]}",
            )
            return False
        return True
