"""The one auth dependency: every credential kind becomes a :class:`Principal`,
then the per-user rate limit and the route's declared permission are checked.

Credential kinds, in exactly one accepted form each:

* ``Authorization: Bearer <JWT>``: an EntraID / OIDC access token (people and
  service principals), or a dev token when ``KEEL_AUTH_MODE=dev``;
* ``Authorization: Bearer keel_…``: an API key (no other header, query
  parameter or scheme is read);
* the ``keel_session`` cookie of a web sign-in, plus ``X-CSRF-Token`` on every
  unsafe method.

Routes declare what they need on their signature:
``principal: Annotated[Principal, Security(authenticate, scopes=["manage_tools"])]``
(aliases in :mod:`api.deps`). The scopes appear in the OpenAPI ``security``
requirement of the operation, which the route-by-role test reads.

Every person identified (dev, oidc and session principals) is recorded in the user
directory, throttled per user (:class:`infra.identity_directory.SignInRecorder`).
"""

from __future__ import annotations

import hmac
from typing import Annotated

import jwt
import structlog
from fastapi import Depends, Request
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer, SecurityScopes

from api.errors import ApiError, request_id_of
from api.state import ApiResources
from core.errors import ErrorCode, KeelError
from core.models.audit import AuditEntry, AuditEvent
from core.models.principal import Principal
from core.policy.permissions import Permission, is_granted, is_privileged
from infra.auth.api_keys import API_KEY_PREFIX
from infra.auth.dev_tokens import DEV_ISSUER, verify_dev_token
from infra.tracing import bind_turn

CHALLENGE = {"WWW-Authenticate": 'Bearer realm="keel"'}
CSRF_HEADER = "X-CSRF-Token"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

bearer_scheme = HTTPBearer(
    auto_error=False,
    scheme_name="bearer",
    description="An EntraID access token, or an API key `keel_…` (dev tokens in dev mode).",
)
session_cookie_scheme = APIKeyCookie(
    name="keel_session",
    auto_error=False,
    scheme_name="session",
    description="The web sign-in cookie; unsafe methods also need the `X-CSRF-Token` header.",
)


def _resources(request: Request) -> ApiResources:
    resources: ApiResources = request.app.state.resources
    return resources


async def _from_bearer(token: str, resources: ApiResources) -> Principal:
    if token.startswith(API_KEY_PREFIX):
        return await resources.api_keys.authenticate(token)
    settings = resources.settings
    try:
        issuer = jwt.decode(token, options={"verify_signature": False}).get("iss")
    except jwt.PyJWTError as exc:
        raise KeelError(ErrorCode.INVALID_TOKEN, "the access token is not valid") from exc
    if issuer == DEV_ISSUER and settings.auth_mode == "dev":
        return verify_dev_token(token, secret=settings.secret_key.get_secret_value())
    if resources.oidc is not None:
        return await resources.oidc.verify(token)
    raise KeelError(ErrorCode.INVALID_TOKEN, "this token kind is not accepted")


async def _from_session_cookie(request: Request, cookie: str, resources: ApiResources) -> Principal:
    session = await resources.web_sessions.get(cookie)
    if session is None:
        raise KeelError(ErrorCode.UNAUTHENTICATED, "the sign-in session has ended; sign in again")
    if request.method not in _SAFE_METHODS:
        sent = request.headers.get(CSRF_HEADER, "")
        if not sent or not hmac.compare_digest(sent, session.csrf_token):
            raise ApiError(ErrorCode.CSRF_FAILED, f"send the {CSRF_HEADER} header of this sign-in")
    return session.principal


async def identify(
    request: Request,
    resources: Annotated[ApiResources, Depends(_resources)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
    cookie: Annotated[str | None, Depends(session_cookie_scheme)],
) -> Principal:
    """Who is calling (401 when nobody is): no rate limit, no permission check."""
    if request.headers.get("authorization") is not None and credentials is None:
        raise ApiError(ErrorCode.UNAUTHENTICATED, "send 'Authorization: Bearer <token>'", headers=CHALLENGE)
    try:
        if credentials is not None:
            principal = await _from_bearer(credentials.credentials.strip(), resources)
        elif cookie:
            principal = await _from_session_cookie(request, cookie, resources)
        else:
            raise ApiError(
                ErrorCode.UNAUTHENTICATED, "send 'Authorization: Bearer <token>'", headers=CHALLENGE
            )
    except KeelError as err:
        raise ApiError(err.code, err.message, headers=CHALLENGE) from err
    structlog.contextvars.bind_contextvars(user_id=principal.user_id)
    bind_turn(user_id=principal.user_id)  # the request's span, and baggage for what it starts
    request.state.principal = principal
    # the user directory: people (not API keys or apps), throttled per user; never fails the request
    await resources.sign_ins.seen(principal)
    return principal


async def authenticate(
    request: Request,
    security_scopes: SecurityScopes,
    resources: Annotated[ApiResources, Depends(_resources)],
    principal: Annotated[Principal, Depends(identify)],
) -> Principal:
    """Identify, rate-limit, then check the route's declared permissions."""
    decision = await resources.rate_limiter.hit(principal.user_id)
    if not decision.allowed:
        if decision.checked:
            raise ApiError(
                ErrorCode.RATE_LIMITED,
                f"more than {resources.rate_limiter.limit} requests in a minute; retry later",
                headers={"Retry-After": str(decision.retry_after_s)},
            )
        raise ApiError(
            ErrorCode.UPSTREAM_UNAVAILABLE,
            "rate limiting is unavailable and this deployment fails closed",
            headers={"Retry-After": str(decision.retry_after_s)},
        )
    for scope in security_scopes.scopes:
        permission = Permission(scope)
        granted = is_granted(principal, permission)
        if not granted or is_privileged(permission):
            await _audit_decision(request, resources, principal, permission, granted=granted)
        if not granted:
            code = ErrorCode.INSUFFICIENT_SCOPE if principal.scopes is not None else ErrorCode.FORBIDDEN
            raise ApiError(code, f"this needs the '{permission.value}' permission")
    return principal


async def _audit_decision(
    request: Request, resources: ApiResources, principal: Principal, permission: Permission, *, granted: bool
) -> None:
    route = request.scope.get("route")
    await resources.audit.record(
        AuditEntry(
            event=AuditEvent.ACCESS_ALLOWED if granted else AuditEvent.ACCESS_DENIED,
            user_id=principal.user_id,
            outcome="success" if granted else "denied",
            resource_type="route",
            resource_id=f"{request.method} {getattr(route, 'path', request.url.path)}",
            details={"permission": permission.value, "auth_method": principal.auth_method},
            request_id=request_id_of(request),
        )
    )
