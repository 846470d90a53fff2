"""FastAPI dependencies as ``Annotated`` aliases."""

from __future__ import annotations

from typing import Annotated

import structlog
from fastapi import Depends, Request
from temporalio.client import Client

from api.errors import ApiError
from api.state import ApiResources
from core.errors import ErrorCode, KeelError
from core.models.principal import Principal
from infra.auth.dev_tokens import verify_dev_token
from infra.settings import Settings


def get_resources(request: Request) -> ApiResources:
    resources: ApiResources = request.app.state.resources
    return resources


ResourcesDep = Annotated[ApiResources, Depends(get_resources)]


def get_settings(resources: ResourcesDep) -> Settings:
    return resources.settings


def get_temporal(resources: ResourcesDep) -> Client:
    return resources.temporal


SettingsDep = Annotated[Settings, Depends(get_settings)]
TemporalDep = Annotated[Client, Depends(get_temporal)]

_BEARER_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="keel"'}


def _bearer_token(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(
            ErrorCode.UNAUTHENTICATED,
            "send 'Authorization: Bearer <token>'",
            headers=_BEARER_CHALLENGE,
        )
    return token.strip()


def get_principal(request: Request, settings: SettingsDep) -> Principal:
    token = _bearer_token(request)
    if settings.auth_mode != "dev":
        raise ApiError(ErrorCode.INVALID_TOKEN, "this token kind is not accepted", headers=_BEARER_CHALLENGE)
    try:
        principal = verify_dev_token(token, secret=settings.secret_key.get_secret_value())
    except KeelError as err:
        raise ApiError(err.code, err.message, headers=_BEARER_CHALLENGE) from err
    structlog.contextvars.bind_contextvars(user_id=principal.user_id)
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]
