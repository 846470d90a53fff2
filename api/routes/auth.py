"""Sign-in: web sign-in with EntraID / OIDC (authorization code + PKCE through
MSAL, session cookies with CSRF), who-am-I, and dev tokens (``KEEL_AUTH_MODE=dev``).

The web session is two cookies: ``keel_session`` (an opaque id; ``HttpOnly``)
and ``keel_csrf`` (readable by the page, which echoes it in ``X-CSRF-Token`` on
every unsafe request). Both are ``SameSite=Lax``, ``Path=/`` and ``Secure``
unless ``KEEL_SESSION_COOKIE_SECURE=false``. During a sign-in, ``keel_login``
(``HttpOnly``, path ``/api/v1/auth/callback``, ten minutes) binds the IdP's
answer to the browser that asked. With secure cookies the IdP posts its answer
(``response_mode=form_post``: the code never appears in a URL), so that cookie
is ``SameSite=None``; without (local plain HTTP) the answer comes in the query
string and the cookie is ``SameSite=Lax``. See docs/identity.md.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import RedirectResponse
from pydantic import BaseModel, Field

from api.deps import PrincipalDep, ResourcesDep, SettingsDep
from api.errors import ApiError, request_id_of
from api.schemas import DevTokenRequest, TokenResponse
from api.state import ApiResources
from core.errors import ErrorCode
from core.models.audit import AuditEntry, AuditEvent, Outcome
from core.models.principal import Principal
from core.policy.permissions import DEFAULT_ROLE, ROLE_PERMISSIONS, Permission, is_granted
from infra.auth.dev_tokens import issue_dev_token
from infra.auth.web_login import FLOW_TTL_S, LoginFailed, LoginUnavailable, WebSignIn
from infra.auth.web_sessions import WebSession
from infra.settings import Settings

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])

SESSION_COOKIE = "keel_session"
CSRF_COOKIE = "keel_csrf"
LOGIN_COOKIE = "keel_login"
CALLBACK_PATH = "/api/v1/auth/callback"
_MAX_NEXT_CHARS = 2048


class MeResponse(BaseModel):
    user_id: str
    email: str | None
    name: str | None
    groups: list[str]
    roles: list[str] = Field(description="Effective Keel roles (User when no role was assigned)")
    permissions: list[str]
    auth_method: str = Field(description="dev | oidc | service_principal | api_key | session")


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


@router.post(
    "/dev-login",
    operation_id="dev_web_login",
    status_code=204,
    response_class=Response,
    responses={204: {"description": "Signed in: the session cookies are set"}},
)
async def dev_web_login(body: DevTokenRequest, request: Request, resources: ResourcesDep) -> Response:
    """Start a web session for any identity you name (`KEEL_AUTH_MODE=dev` only): the same
    `keel_session` / `keel_csrf` cookies as the EntraID callback, audited as `auth.login`.

    JSON only, so another site cannot sign a browser in with a form post (login CSRF)."""
    if resources.settings.auth_mode != "dev":
        raise ApiError(ErrorCode.DEV_AUTH_DISABLED, "dev sign-in is only available when KEEL_AUTH_MODE=dev")
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
        raise ApiError(ErrorCode.INVALID_REQUEST, "send the identity as application/json")
    principal = Principal(
        user_id=body.user_id,
        email=body.email,
        display_name=body.display_name,
        groups=tuple(body.groups),
        roles=tuple(body.roles),
        auth_method="session",
    )
    session = await resources.web_sessions.create(principal)
    await _audit(request, resources, AuditEvent.LOGIN, principal.user_id, "success", method="dev")
    await resources.sign_ins.signed_in(session.principal)
    response = Response(status_code=204)
    _set_session_cookies(response, session, resources.settings)
    return response


# --- web sign-in ---------------------------------------------------------------
def _sign_in(resources: ApiResources) -> WebSignIn:
    sign_in = resources.oidc.sign_in if resources.oidc is not None else None
    if sign_in is None:
        raise ApiError(
            ErrorCode.NOT_FOUND,
            "web sign-in is not configured (KEEL_ENTRA_CLIENT_ID and a client secret or certificate)",
        )
    return sign_in


def safe_next_path(candidate: str | None, default: str) -> str:
    """``candidate`` when it is a path on this site (``/…``), else ``default``: no open redirect."""
    if not candidate or len(candidate) > _MAX_NEXT_CHARS:
        return default
    if not candidate.startswith("/") or candidate.startswith("//") or "\\" in candidate:
        return default
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in candidate):
        return default
    parts = urlsplit(candidate)
    if parts.scheme or parts.netloc:
        return default
    return candidate


@router.get(
    "/login",
    operation_id="start_web_login",
    status_code=302,
    response_class=RedirectResponse,
    responses={302: {"description": "Redirect to the identity provider"}},
)
async def start_web_login(
    request: Request,
    resources: ResourcesDep,
    next_path: str | None = Query(
        default=None,
        alias="next",
        max_length=_MAX_NEXT_CHARS,
        description="Where to land after signing in: a path on this site (e.g. `/chat`)",
    ),
) -> RedirectResponse:
    """Start the EntraID / OIDC sign-in (authorization code + PKCE)."""
    settings = resources.settings
    sign_in = _sign_in(resources)
    redirect_uri = settings.web_redirect_uri or str(request.url_for("finish_web_login"))
    form_post = settings.session_cookie_secure
    try:
        auth_uri, binding = await sign_in.start(
            redirect_uri=redirect_uri,
            next_path=safe_next_path(next_path, settings.web_post_login_path),
            response_mode="form_post" if form_post else "query",
        )
    except LoginUnavailable as exc:
        raise ApiError(ErrorCode.UPSTREAM_UNAVAILABLE, "the identity provider cannot be reached") from exc
    response = RedirectResponse(auth_uri, status_code=302)
    response.set_cookie(
        LOGIN_COOKIE,
        binding,
        max_age=FLOW_TTL_S,
        path=CALLBACK_PATH,
        secure=settings.session_cookie_secure,
        httponly=True,
        samesite="none" if form_post else "lax",  # the IdP's form post is a cross-site POST
    )
    return response


_CALLBACK_RESPONSES: dict[int | str, dict[str, Any]] = {
    303: {"description": "Signed in: session cookies set, redirect to the app"}
}


@router.get(
    "/callback",
    operation_id="finish_web_login",
    status_code=303,
    response_class=RedirectResponse,
    responses=_CALLBACK_RESPONSES,
)
async def finish_web_login(request: Request, resources: ResourcesDep) -> RedirectResponse:
    """The identity provider's redirect back (`response_mode=query`): redeem the code, start a web session."""
    return await _finish(request, resources, dict(request.query_params))


@router.post(
    "/callback",
    operation_id="finish_web_login_form_post",
    status_code=303,
    response_class=RedirectResponse,
    responses=_CALLBACK_RESPONSES,
)
async def finish_web_login_form_post(request: Request, resources: ResourcesDep) -> RedirectResponse:
    """The identity provider's form post back (`response_mode=form_post`)."""
    form = await request.form()
    return await _finish(request, resources, {k: v for k, v in form.items() if isinstance(v, str)})


async def _finish(request: Request, resources: ResourcesDep, params: dict[str, str]) -> RedirectResponse:
    sign_in = _sign_in(resources)
    try:
        principal, next_path = await sign_in.finish(params, binding=request.cookies.get(LOGIN_COOKIE))
    except LoginFailed as failure:
        await _audit(request, resources, AuditEvent.LOGIN_FAILED, None, "failure", reason=failure.reason)
        raise ApiError(ErrorCode.LOGIN_FAILED, "the sign-in did not complete; start again") from failure
    session = await resources.web_sessions.create(principal.model_copy(update={"auth_method": "session"}))
    await _audit(request, resources, AuditEvent.LOGIN, principal.user_id, "success", method="oidc")
    await resources.sign_ins.signed_in(session.principal)  # the user directory, always at sign-in
    # 303: the browser follows with a GET even after the IdP's form post
    response = RedirectResponse(next_path, status_code=303)
    response.delete_cookie(LOGIN_COOKIE, path=CALLBACK_PATH, secure=resources.settings.session_cookie_secure)
    _set_session_cookies(response, session, resources.settings)
    return response


@router.post("/logout", operation_id="web_logout", status_code=204, response_class=Response)
async def web_logout(request: Request, principal: PrincipalDep, resources: ResourcesDep) -> Response:
    """End the web session (session cookie and `X-CSRF-Token`) and clear its cookies.

    With a bearer credential there is no session to end: the cookies are cleared, nothing else."""
    session_id = request.cookies.get(SESSION_COOKIE)
    if principal.auth_method == "session" and session_id:
        await resources.web_sessions.delete(session_id)
        await _audit(request, resources, AuditEvent.LOGOUT, principal.user_id, "success")
    response = Response(status_code=204)
    _clear_session_cookies(response, resources.settings)
    return response


@router.post("/refresh", operation_id="refresh_web_session", status_code=204, response_class=Response)
async def refresh_web_session(request: Request, principal: PrincipalDep, resources: ResourcesDep) -> Response:
    """New session id and CSRF token for the same sign-in (the old ones stop working).

    The sign-in's expiry is kept: a session never outlives `KEEL_SESSION_TTL_S` after sign-in."""
    session_id = request.cookies.get(SESSION_COOKIE)
    if principal.auth_method != "session" or not session_id:
        raise ApiError(
            ErrorCode.INVALID_REQUEST,
            "refresh renews a web sign-in session: call it with the session cookie "
            "(bearer tokens are renewed at the identity provider)",
        )
    rotated = await resources.web_sessions.rotate(session_id)
    if rotated is None:
        raise ApiError(ErrorCode.UNAUTHENTICATED, "the sign-in session has ended; sign in again")
    await _audit(request, resources, AuditEvent.TOKEN_REFRESH, principal.user_id, "success")
    response = Response(status_code=204)
    _set_session_cookies(response, rotated, resources.settings)
    return response


@router.get("/me", operation_id="get_me", response_model=MeResponse)
async def get_me(principal: PrincipalDep) -> MeResponse:
    """Who the caller is and what they may do (any credential)."""
    roles = sorted({r for r in principal.roles if r in ROLE_PERMISSIONS}) or [DEFAULT_ROLE]
    return MeResponse(
        user_id=principal.user_id,
        email=principal.email,
        name=principal.display_name,
        groups=list(principal.groups),
        roles=roles,
        permissions=[p.value for p in Permission if is_granted(principal, p)],
        auth_method=principal.auth_method,
    )


# --- helpers -------------------------------------------------------------------
def _set_session_cookies(response: Response, session: WebSession, settings: Settings) -> None:
    max_age = session.ttl_s or settings.session_ttl_s
    for name, value, http_only in (
        (SESSION_COOKIE, session.session_id, True),
        (CSRF_COOKIE, session.csrf_token, False),
    ):
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            path="/",
            secure=settings.session_cookie_secure,
            httponly=http_only,
            samesite="lax",
        )


def _clear_session_cookies(response: Response, settings: Settings) -> None:
    for name, http_only in ((SESSION_COOKIE, True), (CSRF_COOKIE, False)):
        response.delete_cookie(
            name, path="/", secure=settings.session_cookie_secure, httponly=http_only, samesite="lax"
        )


async def _audit(
    request: Request,
    resources: ApiResources,
    event: AuditEvent,
    user_id: str | None,
    outcome: Outcome,
    **details: str,
) -> None:
    await resources.audit.record(
        AuditEntry(
            event=event,
            user_id=user_id,
            outcome=outcome,
            resource_type="web_session",
            details=details,
            request_id=request_id_of(request),
        )
    )
