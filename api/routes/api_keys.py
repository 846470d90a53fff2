"""API keys of the caller: create (shown once), list, rotate, revoke.

Managed with a sign-in (EntraID token, web session or dev token), never with
another API key. A key is used as ``Authorization: Bearer keel_…`` only.
"""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Response
from pydantic import BaseModel, Field

from api.deps import PrincipalDep, ResourcesDep
from api.text_guard import RequestModel
from core.models.audit import AuditEntry, AuditEvent
from core.models.principal import Principal
from core.policy.permissions import Permission
from infra.db.api_keys_repo import ApiKeyRecord

router = APIRouter(prefix="/api/v1/api-keys", tags=["api-keys"])


class CreateApiKeyRequest(RequestModel):
    name: str = Field(min_length=1, max_length=100)
    scopes: list[Permission] = Field(
        min_length=1, max_length=len(Permission), description="Permissions the key may use"
    )
    expires_at: datetime | None = Field(
        default=None, description="With a time zone; default and maximum: KEEL_API_KEY_MAX_TTL_DAYS ahead"
    )


class ApiKeyView(BaseModel):
    id: str
    name: str
    prefix: str = Field(description="The key's first characters, to tell keys apart")
    scopes: list[str]
    expires_at: datetime
    created_at: datetime
    rotated_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None
    status: str = Field(description="active | expired | revoked")


class ApiKeyCreated(ApiKeyView):
    key: str = Field(description="The key itself: shown only in this response")


class ApiKeyList(BaseModel):
    api_keys: list[ApiKeyView]


def _view(record: ApiKeyRecord, now: datetime | None = None) -> ApiKeyView:
    now = now or datetime.now(record.expires_at.tzinfo)
    status = "revoked" if record.revoked_at else "expired" if record.expires_at <= now else "active"
    return ApiKeyView(**record.model_dump(include=set(ApiKeyView.model_fields) - {"status"}), status=status)


async def _audit(resources: ResourcesDep, principal: Principal, event: AuditEvent, record_id: str) -> None:
    await resources.audit.record(
        AuditEntry(event=event, user_id=principal.user_id, resource_type="api_key", resource_id=record_id)
    )


@router.post("", operation_id="create_api_key", status_code=201, response_model=ApiKeyCreated)
async def create_api_key(
    body: CreateApiKeyRequest, principal: PrincipalDep, resources: ResourcesDep
) -> ApiKeyCreated:
    record, key = await resources.api_keys.create(
        principal, name=body.name, scopes=[s.value for s in body.scopes], expires_at=body.expires_at
    )
    await _audit(resources, principal, AuditEvent.API_KEY_CREATED, record.id)
    return ApiKeyCreated(**_view(record).model_dump(), key=key)


@router.get("", operation_id="list_api_keys", response_model=ApiKeyList)
async def list_api_keys(principal: PrincipalDep, resources: ResourcesDep) -> ApiKeyList:
    return ApiKeyList(api_keys=[_view(r) for r in await resources.api_keys.list(principal)])


@router.post("/{key_id}/rotate", operation_id="rotate_api_key", response_model=ApiKeyCreated)
async def rotate_api_key(key_id: str, principal: PrincipalDep, resources: ResourcesDep) -> ApiKeyCreated:
    """A new secret for the key (same id, scopes and expiry); the old secret stops working now."""
    record, key = await resources.api_keys.rotate(principal, key_id)
    await _audit(resources, principal, AuditEvent.API_KEY_ROTATED, record.id)
    return ApiKeyCreated(**_view(record).model_dump(), key=key)


@router.delete("/{key_id}", operation_id="revoke_api_key", status_code=204)
async def revoke_api_key(key_id: str, principal: PrincipalDep, resources: ResourcesDep) -> Response:
    await resources.api_keys.revoke(principal, key_id)
    await _audit(resources, principal, AuditEvent.API_KEY_REVOKED, key_id)
    return Response(status_code=204)
