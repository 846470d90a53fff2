"""API keys: ``keel_`` + 43 URL-safe characters (256 random bits), shown once.

Only ``sha256(key)`` is stored. A key acts for its owner with the groups and
roles captured when it was made (or last rotated), narrowed to its scopes
(permission names); it can never hold a permission its owner lacked then.
Accepted only as ``Authorization: Bearer keel_…``.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from datetime import UTC, datetime, timedelta

from core.errors import ErrorCode, KeelError
from core.models.principal import Principal
from core.policy.permissions import Permission, permissions_of
from infra.db.api_keys_repo import ApiKeyRecord, ApiKeyRepository

API_KEY_PREFIX = "keel_"
_SHOWN_CHARS = len(API_KEY_PREFIX) + 6
_MAX_KEY_CHARS = 128


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _new_key() -> str:
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


class ApiKeyService:
    def __init__(self, repo: ApiKeyRepository, *, max_ttl_days: int) -> None:
        self._repo = repo
        self._max_ttl = timedelta(days=max_ttl_days)

    async def authenticate(self, key: str) -> Principal:
        invalid = KeelError(ErrorCode.INVALID_TOKEN, "the API key is not valid")
        if len(key) > _MAX_KEY_CHARS:
            raise invalid
        record = await self._repo.by_hash(hash_key(key))
        if record is None or record.revoked_at is not None:
            raise invalid
        if record.expires_at <= datetime.now(UTC):
            raise KeelError(ErrorCode.TOKEN_EXPIRED, "the API key has expired")
        await self._repo.mark_used(record.id)
        return Principal(
            user_id=record.user_id,
            email=record.email,
            groups=tuple(record.groups),
            roles=tuple(record.roles),
            auth_method="api_key",
            scopes=tuple(record.scopes),
            api_key_id=record.id,
        )

    async def create(
        self, owner: Principal, *, name: str, scopes: list[str], expires_at: datetime | None
    ) -> tuple[ApiKeyRecord, str]:
        self._check_owner(owner)
        granted = {p.value for p in permissions_of(owner)}
        unknown = sorted(set(scopes) - {p.value for p in Permission})
        if unknown:
            raise KeelError(ErrorCode.INVALID_REQUEST, f"unknown scopes {unknown}")
        beyond = sorted(set(scopes) - granted)
        if beyond:
            raise KeelError(ErrorCode.FORBIDDEN, f"you cannot grant scopes you do not hold: {beyond}")
        now = datetime.now(UTC)
        expiry = expires_at or now + self._max_ttl
        if expiry.tzinfo is None:
            raise KeelError(
                ErrorCode.INVALID_REQUEST, "expires_at needs a time zone (e.g. 2027-01-01T00:00:00Z)"
            )
        if expiry <= now:
            raise KeelError(ErrorCode.INVALID_REQUEST, "expires_at must be in the future")
        if expiry > now + self._max_ttl:
            raise KeelError(
                ErrorCode.INVALID_REQUEST, f"expires_at may be at most {self._max_ttl.days} days ahead"
            )
        key = _new_key()
        record = ApiKeyRecord(
            id=f"key_{uuid.uuid4().hex}",
            user_id=owner.user_id,
            name=name,
            prefix=key[:_SHOWN_CHARS],
            scopes=sorted(set(scopes)),
            email=owner.email,
            groups=list(owner.groups),
            roles=list(owner.roles),
            expires_at=expiry,
            created_at=now,
            rotated_at=None,
            last_used_at=None,
            revoked_at=None,
        )
        await self._repo.insert(record, key_hash=hash_key(key))
        return record, key

    async def list(self, owner: Principal) -> list[ApiKeyRecord]:
        return await self._repo.list_for(owner.user_id)

    async def rotate(self, owner: Principal, key_id: str) -> tuple[ApiKeyRecord, str]:
        self._check_owner(owner)
        key = _new_key()
        record = await self._repo.rotate(
            owner.user_id,
            key_id,
            key_hash=hash_key(key),
            prefix=key[:_SHOWN_CHARS],
            groups=list(owner.groups),
            roles=list(owner.roles),
        )
        if record is None:
            raise KeelError(ErrorCode.NOT_FOUND, "no such live API key")
        return record, key

    async def revoke(self, owner: Principal, key_id: str) -> None:
        self._check_owner(owner)
        if not await self._repo.revoke(owner.user_id, key_id):
            raise KeelError(ErrorCode.NOT_FOUND, "no such live API key")

    @staticmethod
    def _check_owner(owner: Principal) -> None:
        if owner.auth_method == "api_key":
            raise KeelError(ErrorCode.FORBIDDEN, "API keys are managed with a sign-in, not with another key")
