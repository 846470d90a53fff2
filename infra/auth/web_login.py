"""Web sign-in: OIDC authorization code flow with PKCE, through MSAL.

``start`` asks MSAL for a flow (state, nonce, PKCE verifier), keeps it in Redis
for ten minutes keyed by its ``state`` together with the hash of a random
*binding* value, and returns the IdP's authorize URL and the binding (the route
puts it in a short-lived cookie of the browser that started the sign-in).
``finish`` takes the callback's parameters and the binding cookie, consumes
the stored flow (one use), requires the binding to match (so a code and state
obtained by someone else cannot sign this browser in: login CSRF), lets MSAL
check the state and redeem the code with the PKCE verifier (MSAL also checks
the ID token's nonce), then validates the ID token like an access token
(signature from the JWKS, issuer, audience = our client id, expiry) and maps
its claims to a :class:`Principal`.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import secrets
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import redis.asyncio as aioredis
import structlog

from core.errors import KeelError
from core.models.principal import Principal
from infra.auth.msal_app import LazyMsalApp
from infra.settings import Settings

log = structlog.get_logger(__name__)

FLOW_TTL_S = 600
_FLOW_PREFIX = "keel:authflow:"
_MAX_STATE_CHARS = 256
_CALLBACK_KEYS = ("code", "state", "error", "error_description", "error_uri", "client_info", "session_state")

IdTokenVerifier = Callable[[str], Awaitable[Principal]]


class LoginFailed(Exception):
    """The sign-in did not complete; ``reason`` is short and safe to audit."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class LoginUnavailable(Exception):
    """The identity provider cannot be reached to start a sign-in."""


class WebSignIn:
    def __init__(
        self,
        settings: Settings,
        *,
        redis: aioredis.Redis,
        msal_app: LazyMsalApp,
        verify_id_token: IdTokenVerifier,
    ) -> None:
        self._settings = settings
        self._redis = redis
        self._msal_app = msal_app
        self._verify_id_token = verify_id_token

    async def start(self, *, redirect_uri: str, next_path: str, response_mode: str) -> tuple[str, str]:
        """(the IdP URL to send the browser to, the binding value for the browser's cookie)."""
        try:
            app = await self._msal_app.get()
            flow: dict[str, Any] = await asyncio.to_thread(
                app.initiate_auth_code_flow,
                list(self._settings.web_scopes),
                redirect_uri=redirect_uri,
                response_mode=response_mode,
            )
        except (OSError, ValueError) as exc:
            log.warning("auth.login_unavailable", error=str(exc))
            raise LoginUnavailable(str(exc)) from exc
        binding = secrets.token_urlsafe(32)
        record = {"flow": flow, "next": next_path, "binding": _digest(binding)}
        await self._redis.set(_FLOW_PREFIX + str(flow["state"]), json.dumps(record), ex=FLOW_TTL_S)
        return str(flow["auth_uri"]), binding

    async def finish(self, params: Mapping[str, str], *, binding: str | None) -> tuple[Principal, str]:
        """The signed-in person and the path to return to; :class:`LoginFailed` otherwise."""
        state = params.get("state") or ""
        if not state or len(state) > _MAX_STATE_CHARS:
            raise LoginFailed("missing_state")
        raw = await self._redis.getdel(_FLOW_PREFIX + state)
        if raw is None:
            raise LoginFailed("unknown_state")
        record = json.loads(raw)
        if not binding or not hmac.compare_digest(_digest(binding), str(record["binding"])):
            raise LoginFailed("not_this_browser")
        auth_response = {k: params[k] for k in _CALLBACK_KEYS if k in params}
        try:
            app = await self._msal_app.get()
            result: dict[str, Any] = await asyncio.to_thread(
                app.acquire_token_by_auth_code_flow, record["flow"], auth_response
            )
        except OSError as exc:
            log.warning("auth.login_idp_unreachable", error=str(exc))
            raise LoginFailed("idp_unreachable") from exc
        except (ValueError, RuntimeError, KeyError, TypeError) as exc:  # state/nonce mismatch, bad input
            log.info("auth.login_flow_rejected", error=str(exc))
            raise LoginFailed("flow_rejected") from exc
        if "error" in result:
            log.info(
                "auth.login_idp_error", error=result.get("error"), detail=result.get("error_description")
            )
            raise LoginFailed(f"idp_error:{str(result['error'])[:64]}")
        id_token = result.get("id_token")
        if not isinstance(id_token, str):
            raise LoginFailed("no_id_token")
        try:
            principal = await self._verify_id_token(id_token)
        except KeelError as err:
            raise LoginFailed(f"id_token_rejected:{err.code}") from err
        return principal, str(record["next"])


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()
