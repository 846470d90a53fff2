"""Dev-mode tokens (``KEEL_AUTH_MODE=dev`` only; refused in production by settings)."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import SettingsDep
from api.errors import ApiError
from api.schemas import DevTokenRequest, TokenResponse
from core.errors import ErrorCode
from core.models.principal import Principal
from infra.auth.dev_tokens import issue_dev_token

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])


@router.post("/dev-token", operation_id="create_dev_token", response_model=TokenResponse)
async def create_dev_token(body: DevTokenRequest, settings: SettingsDep) -> TokenResponse:
    if settings.auth_mode != "dev":
        raise ApiError(ErrorCode.DEV_AUTH_DISABLED, "dev tokens are only available when KEEL_AUTH_MODE=dev")
    principal = Principal(
        user_id=body.user_id,
        email=body.email,
        display_name=body.display_name,
        groups=tuple(body.groups),
        roles=tuple(body.roles),
    )
    token = issue_dev_token(
        principal, secret=settings.secret_key.get_secret_value(), ttl_s=settings.dev_token_ttl_s
    )
    return TokenResponse(access_token=token, expires_in=settings.dev_token_ttl_s)
